"""Big images segment straight into OME-Zarr labels on disk (API and CLI), never into full arrays."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_autosam.cli import main
from napari_autosam.data.synthetic import make_nuclei_image
from napari_autosam.inference import Segmenter
from napari_autosam.inference.ondisk import segment_to_labels
from napari_autosam.io import labels_zarr
from napari_autosam.io.labels_zarr import LabelImage
from napari_autosam.progress import run

SHAPE = (300, 340)


@pytest.fixture
def small_threshold(monkeypatch):
    """Planes over 200² count as big (the real threshold, 4096², would need minutes of tiny SAM)."""
    monkeypatch.setattr(labels_zarr, "ON_DISK_ABOVE", 200 * 200)


@pytest.fixture
def no_full_arrays(monkeypatch):
    """Inside ``with no_full_arrays():``, creating a numpy array of a whole plane (``300×340``, ``300×340×3``, …)
    fails the test."""
    import contextlib

    state = {"on": False}

    def guard(name):
        original = getattr(np, name)

        def make(shape, *args, **kwargs):
            dims = tuple(int(s) for s in np.atleast_1d(shape))
            whole = any(dims[i : i + 2] == SHAPE for i in range(len(dims) - 1))
            assert not (whole and state["on"]), f"np.{name}({shape}) allocates a whole plane"
            return original(shape, *args, **kwargs)

        return make

    @contextlib.contextmanager
    def activate():
        # 128² chunks and blocks everywhere, so the 300×340 plane spans several chunks as a real slide spans 1024² ones
        import functools

        from napari_autosam.inference import outputs, tiling

        monkeypatch.setattr(outputs, "create_array", functools.partial(tiling.create_array, chunk=128))
        small_blocks = functools.partial(tiling.blocks, block=128)
        monkeypatch.setattr(outputs, "blocks", small_blocks)
        monkeypatch.setattr(tiling, "blocks", small_blocks)
        monkeypatch.setattr(labels_zarr, "CHUNK", 128)
        monkeypatch.setattr(labels_zarr, "SMALLEST_LEVEL", 128)
        for name in ("zeros", "empty", "full", "ones"):
            monkeypatch.setattr(np, name, guard(name))
        state["on"] = True
        try:
            yield
        finally:
            state["on"] = False

    return activate


@pytest.fixture(scope="module")
def rgb_zarr(tmp_path_factory):
    """A lazy 300×340 RGB image (two nuclei images side by side)."""
    image = np.concatenate([make_nuclei_image((SHAPE[0], 170), seed=s, stain="he")[0] for s in (1, 2)], axis=1)
    array = zarr.create_array(store=str(tmp_path_factory.mktemp("img") / "he.zarr"), shape=image.shape,
                              chunks=(128, 128, 3), dtype=image.dtype)
    array[:] = image
    return array


@pytest.fixture(scope="module")
def segmenter(sam):
    from napari_autosam.inference import InstanceOptions

    return Segmenter(sam, instance_options=InstanceOptions(refine=False))  # no decoder call per object: fast


def test_big_image_goes_to_ome_zarr_without_a_full_array(segmenter, rgb_zarr, tmp_path, no_full_arrays):
    from napari_autosam.io.normalize import compute_normalization

    placement = labels_zarr.Placement((0.5, 0.5), (0.25, 0.25), "micrometer")
    # the intensity scaling reads a strided sample of at most ~1M pixels: all of this small image
    normalization = compute_normalization(rgb_zarr, channel_axis=2)
    with no_full_arrays():
        result = run(segment_to_labels(segmenter, rgb_zarr, tmp_path, "he", tile=192, overlap=32, mode="instances",
                                       placement=placement, attributes={"source": "he.svs"},
                                       normalization=normalization))
    assert sorted(result.paths) == ["autosam", "h", "instances"] and result.region is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["he_autosam.ome.zarr", "he_h.ome.zarr",
                                                          "he_instances.ome.zarr"], "scratch store removed"
    autosam = LabelImage.open(result.paths["autosam"])
    assert autosam.shape == SHAPE and autosam.dtype == np.uint8 and autosam.placement == placement
    assert [level.shape for level in autosam.levels] == [SHAPE, (150, 170), (75, 85)]
    assert autosam.attributes == {"source": "he.svs", "role": "autosam"}
    mask = autosam.read_region((0, SHAPE[0], 0, SHAPE[1]))
    assert set(np.unique(mask)) <= {0, 1} and 0 < result.foreground < 1
    assert abs(float(np.mean(mask)) - result.foreground) < 1e-9
    instances = LabelImage.open(result.paths["instances"])
    assert instances.dtype == np.int32 and instances.attributes["max_label"] == int(np.asarray(instances.levels[0]).max())


def test_region_resegmentation_updates_only_that_region(segmenter, rgb_zarr, tmp_path):
    path = tmp_path / "he_autosam.ome.zarr"
    LabelImage.create(path, SHAPE, np.uint8).update_region((0, SHAPE[0], 0, SHAPE[1]), np.full(SHAPE, 1, np.uint8))
    region = (40, 140, 60, 180)
    result = run(segment_to_labels(segmenter, rgb_zarr, tmp_path, "he", region=region))
    assert result.region == region
    after = LabelImage.open(path).read_region((0, SHAPE[0], 0, SHAPE[1]))
    outside = np.ones(SHAPE, bool)
    outside[40:140, 60:180] = False
    assert after[outside].all(), "pixels outside the region are untouched"
    assert not after[~outside].all(), "the region holds the new segmentation"
    with pytest.raises(ValueError, match="does not overlap the 300×340 image"):
        run(segment_to_labels(segmenter, rgb_zarr, tmp_path, "he", region=(400, 500, 0, 10)))


def test_region_of_an_image_without_labels_creates_empty_ones(segmenter, rgb_zarr, tmp_path):
    run(segment_to_labels(segmenter, rgb_zarr, tmp_path, "he", region=(0, 100, 0, 100), mode="instances"))
    instances = LabelImage.open(tmp_path / "he_instances.ome.zarr")
    assert instances.shape == SHAPE and not np.asarray(instances.levels[0][100:, :]).any()
    first = instances.attributes["max_label"]
    run(segment_to_labels(segmenter, rgb_zarr, tmp_path, "he", region=(150, 250, 150, 250), mode="instances"))
    labels = np.asarray(LabelImage.open(tmp_path / "he_instances.ome.zarr").levels[0])
    second = labels[150:250, 150:250]
    assert not second.any() or second[second > 0].min() > first, "new instance ids do not reuse old ones"


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gray_tif(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "slide.tif"
    tifffile.imwrite(path, make_nuclei_image((230, 250), seed=5)[0])
    return path


def _cli(path, out, *extra):
    """One untiled run (the tile-by-tile path is covered above)."""
    return main(["segment", str(path), "--out", str(out), "--sam", "tiny", "--device", "cpu", "--tile", "0", *extra])


def test_cli_writes_ome_zarr_for_big_inputs_and_tiff_when_asked(gray_tif, tmp_path, small_threshold, capsys):
    assert _cli(gray_tif, tmp_path / "auto") == 0
    assert sorted(p.name for p in (tmp_path / "auto").iterdir()) == ["slide_autosam.ome.zarr", "slide_h.ome.zarr"]
    assert "→ slide_autosam.ome.zarr, slide_h.ome.zarr" in capsys.readouterr().out
    autosam = LabelImage.open(tmp_path / "auto" / "slide_autosam.ome.zarr")
    assert autosam.shape == (230, 250) and autosam.attributes["source"] == str(gray_tif)
    assert _cli(gray_tif, tmp_path / "tiff", "--format", "tiff") == 0
    assert sorted(p.name for p in (tmp_path / "tiff").iterdir()) == ["slide_autosam.tif", "slide_h.tif"]
    on_disk = autosam.read_region((0, 230, 0, 250))
    assert np.array_equal(tifffile.imread(tmp_path / "tiff" / "slide_autosam.tif"), on_disk), "same masks either way"


def test_cli_format_ome_zarr_for_a_small_input(gray_tif, tmp_path, capsys):
    assert _cli(gray_tif, tmp_path, "--format", "ome-zarr") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slide_autosam.ome.zarr", "slide_h.ome.zarr"]
    assert _cli(gray_tif, tmp_path / "p", "--format", "ome-zarr", "--save-prob") == 1
    assert "--save-prob writes TIFF probability maps" in capsys.readouterr().err


def test_cli_failure_while_writing_leaves_nothing(gray_tif, tmp_path, small_threshold, monkeypatch, capsys):
    original = LabelImage.write_array

    def failing(self, source, **kwargs):
        if self.attributes.get("role") == "h":
            raise OSError("disk full")
        return (yield from original(self, source, **kwargs))

    monkeypatch.setattr(LabelImage, "write_array", failing)
    out = tmp_path / "out"
    assert _cli(gray_tif, out) == 1
    assert "slide.tif: disk full" in capsys.readouterr().err
    assert list(out.iterdir()) == [], "neither the finished AutoSAM labels nor temporary folders are left"


def test_tiles_of_a_big_image_are_cached_on_disk_not_in_memory(sam, rgb_zarr, tmp_path):
    from napari_autosam.sam.cache import EmbeddingCache

    cache = EmbeddingCache(sam, tmp_path / "embeddings")
    segmenter = Segmenter(sam, cache=cache)
    image = rgb_zarr[:, :200]  # two tiles of 256
    run(segmenter.segment(image, tile=256, overlap=32, store=tmp_path / "scratch"))
    assert cache.encoded == 2 and len(list(cache.directory.iterdir())) == 2
    assert len(cache._memory) == 0, "memory held does not grow with the number of tiles"
    run(segmenter.segment(image, tile=256, overlap=32, store=tmp_path / "scratch"))
    assert cache.encoded == 2, "re-segmenting reads the tiles' embeddings from disk"


def test_cli_ome_zarr_at_a_pyramid_level_is_placed_over_level_0(tmp_path, small_threshold, capsys):
    image = np.concatenate([make_nuclei_image((240, 240), seed=s)[0] for s in (6, 7)], axis=1)  # 240×480 gray
    path = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, subifds=1, tile=(128, 128))
        tif.write(image[::2, ::2], subfiletype=1, tile=(128, 128))
    assert _cli(path, tmp_path / "out", "--level", "1", "--format", "ome-zarr") == 0
    labels = LabelImage.open(tmp_path / "out" / "pyramid_autosam.ome.zarr")
    assert labels.shape == (120, 240)
    assert labels.placement == labels_zarr.Placement((2.0, 2.0), (0.5, 0.5), None), "level-0 pixels, centres aligned"
    assert labels.attributes["resolution"] == {"level": 1, "downsample": 2.0, "mpp": None}
    assert "pyramid.ome.tif: 120×240 at" in capsys.readouterr().out
