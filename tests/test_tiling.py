"""Tile grids, blending weights, and tiled segmentation against untiled."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_autosam.data.synthetic import make_nuclei_image
from napari_autosam.inference import InstanceOptions, Segmenter
from napari_autosam.inference.instances import split_objects
from napari_autosam.inference.testing import threshold_model
from napari_autosam.inference.tiling import axis_spans, tile_grid
from napari_autosam.io.normalize import to_rgb_uint8
from napari_autosam.progress import run

pytestmark = pytest.mark.usefixtures("own_cache")


@pytest.fixture(scope="module")
def threshold_segmenter(sam, tmp_path_factory):
    """Known h(g(I)) (mean intensity > 0.3); an on-disk embedding cache shared by the module's tiled runs."""
    from napari_autosam.sam.cache import EmbeddingCache

    cache = EmbeddingCache(sam, tmp_path_factory.mktemp("embeddings"))
    return Segmenter(sam, threshold_model(0.3), cache=cache, instance_options=InstanceOptions(source="h", refine=False))


@pytest.mark.parametrize("length", [1, 5, 256, 257, 300, 1000, 4097])
@pytest.mark.parametrize("tile,overlap", [(256, 64), (100, 0), (128, 127)])
def test_axis_spans_cover_the_axis_and_their_cores_partition_it(length, tile, overlap):
    spans = axis_spans(length, tile, overlap)
    assert spans[0].start == 0 and spans[-1].stop == length
    covered = np.zeros(length, int)
    for span in spans:
        assert span.stop - span.start == min(tile, length)
        covered[span.core_start : span.core_stop] += 1
        assert span.start <= span.core_start < span.core_stop <= span.stop
    assert (covered == 1).all()
    for before, after in zip(spans, spans[1:]):
        assert before.stop - after.start >= overlap  # at least the requested overlap
        assert after.overlap_before == before.overlap_after == before.stop - after.start


def test_axis_spans_reject_bad_arguments():
    with pytest.raises(ValueError, match="overlap"):
        axis_spans(100, 64, 64)
    with pytest.raises(ValueError, match="tile"):
        axis_spans(100, 0, 0)


@pytest.mark.parametrize("shape", [(700, 1000), (256, 256), (1, 3000), (513, 257)])
def test_blending_weights_sum_to_one_and_cores_partition_the_plane(shape):
    tiles = tile_grid(shape, 256, 64)
    total = np.zeros(shape)
    owners = np.zeros(shape, int)
    for t in tiles:
        weight = t.weight()
        assert weight.shape == (t.window[1] - t.window[0], t.window[3] - t.window[2])
        assert (weight > 0).all()
        total[t.slices] += weight
        y0, y1, x0, x1 = t.core
        owners[y0:y1, x0:x1] += 1
    np.testing.assert_allclose(total, 1.0, rtol=1e-6)
    assert (owners == 1).all()


def test_a_plane_that_fits_gets_one_tile_of_weight_one():
    (only,) = tile_grid((300, 200), 512, 128)
    assert only.window == (0, 300, 0, 200) and only.core == only.window
    assert (only.weight() == 1).all()


def test_tiled_equals_untiled_when_the_image_fits_one_tile(sam):
    image, _ = make_nuclei_image((200, 300), seed=3)
    seg = Segmenter(sam)
    plain = run(seg.segment(image))
    tiled = run(seg.segment(image, tile=512, overlap=128))
    assert tiled.store is None  # one tile: in memory, like the untiled run
    for name in ("autosam_prob", "autosam_mask", "h_prob", "h_mask"):
        np.testing.assert_array_equal(getattr(tiled, name), getattr(plain, name))
    assert tiled.agreement == plain.agreement


def test_tiles_blend_seamlessly_and_outputs_go_to_zarr(threshold_segmenter, tmp_path):
    """With a model that needs no resampling at tile size, blended tiles reproduce the per-pixel answer exactly."""
    image, labels = make_nuclei_image((384, 320), seed=5, n_nuclei=14, touching_fraction=0.5, noise=0.3)
    seg = threshold_segmenter
    result = run(seg.segment(image, tile=256, overlap=96, store=tmp_path / "out"))
    assert result.store == tmp_path / "out"
    assert isinstance(result.h_mask, zarr.Array) and result.h_mask.shape == image.shape
    rgb, _ = to_rgb_uint8(image, normalization=result.normalization)
    expected = rgb.mean(-1) / 255 > 0.3
    np.testing.assert_array_equal(np.asarray(result.h_mask[:]).astype(bool), expected)
    prob = np.asarray(result.autosam_prob[:])
    assert prob.dtype == np.float32 and np.isfinite(prob).all() and (0 <= prob).all() and (prob <= 1).all()
    np.testing.assert_array_equal(np.asarray(result.autosam_mask[:]), (prob > 0.5).astype(np.uint8))


def test_tiled_instances_equal_whole_plane_instances_across_tile_borders(threshold_segmenter, tmp_path):
    """Each object is found once, whole, by the tile owning its inner point: as if the plane were not tiled."""
    image, _ = make_nuclei_image((384, 320), seed=5, n_nuclei=14, touching_fraction=0.5, noise=0.3)
    seg = threshold_segmenter  # keeps the auxiliary objects (refine=False): the tiny SAM is random
    options = seg.instance_options
    result = run(seg.segment(image, mode="instances", tile=256, overlap=96, store=tmp_path))
    labels = np.asarray(result.instances[:])
    rgb, _ = to_rgb_uint8(image, normalization=result.normalization)
    whole = split_objects(rgb.mean(-1) / 255 > 0.3, min_size=options.min_size, split_depth=options.split_depth)
    assert whole.max() >= 10 and len(np.unique(labels)) == len(np.unique(whole))
    crossing = 0
    for i in range(1, whole.max() + 1):
        obj = whole == i
        ids = np.unique(labels[obj])
        assert len(ids) == 1 and ids[0] > 0  # one instance, no seam through it
        assert np.array_equal(labels == ids[0], obj)
        in_core = [obj[t.core[0] : t.core[1], t.core[2] : t.core[3]].sum() for t in tile_grid(image.shape, 256, 96)]
        crossing += sum(n > 0 for n in in_core) > 1
    assert crossing >= 2  # some objects do straddle the border between two tiles' cores


def test_lazy_tiled_tiff_input_is_read_window_by_window(threshold_segmenter, tmp_path):
    image, _ = make_nuclei_image((384, 320), seed=5, n_nuclei=14, touching_fraction=0.5, noise=0.3)
    path = tmp_path / "tiled.tif"
    tifffile.imwrite(path, image, tile=(64, 64))  # a tiled TIFF: read through tifffile's zarr store
    from napari_autosam.io.images import open_lazy

    lazy = open_lazy(path)
    assert not isinstance(lazy, np.ndarray)
    result = run(threshold_segmenter.segment(lazy, tile=256, overlap=96))
    rgb, _ = to_rgb_uint8(image, normalization=result.normalization)
    np.testing.assert_array_equal(np.asarray(result.h_mask[:]).astype(bool), rgb.mean(-1) / 255 > 0.3)
