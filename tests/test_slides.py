"""Opening whole slides (Aperio SVS, generic tiled TIFF, OME-TIFF, OME-Zarr) and their working resolution."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_autosam.data.synthetic_slides import (
    pattern,
    write_ome_tiff,
    write_ome_zarr,
    write_svs,
    write_tiled_tiff,
)
from napari_autosam.io.slides import SlideReadError, open_slide
from napari_autosam.io.working import (
    Resampled,
    Resolution,
    ResolutionError,
    layer_transform,
    region_to_level0,
    region_to_working,
    to_level0,
    to_working,
    working_image,
)


@pytest.fixture(scope="module")
def image():
    return pattern(512, 768, seed=1)


@pytest.fixture(scope="module")
def svs(tmp_path_factory, image):
    return write_svs(tmp_path_factory.mktemp("svs") / "biopsy.svs", image, downsamples=(4, 16))


def test_aperio_svs_opens_lazily_with_its_calibration(svs, image):
    import openslide

    assert openslide.OpenSlide.detect_format(str(svs)) == "aperio"  # the file is a real Aperio slide to OpenSlide
    slide = open_slide(svs)
    assert (slide.vendor, slide.backend) == ("aperio", "tifffile")
    assert slide.mpp == (0.25, 0.25) and slide.objective_power == 40.0
    assert [tuple(level.shape) for level in slide.levels] == [(512, 768, 3), (128, 192, 3), (32, 48, 3)]
    assert slide.downsamples == [1.0, 4.0, 16.0]
    assert not isinstance(slide.levels[0], np.ndarray)  # lazy
    window = np.asarray(slide.levels[0][100:164, 200:264])
    assert window.shape == (64, 64, 3) and window.dtype == np.uint8
    assert np.abs(window.astype(int) - image[100:164, 200:264]).mean() < 8  # JPEG-close to what was written
    # OpenSlide's own pixels agree with tifffile's
    reference = np.asarray(openslide.OpenSlide(str(svs)).read_region((200, 100), 0, (64, 64)))[..., :3]
    assert np.abs(reference.astype(int) - window).mean() < 2


def test_openslide_backend_levels_slice_like_arrays(tmp_path, image):
    # An OpenSlide-only suffix goes through OpenSlide; OpenSlide identifies the Aperio content.
    path = write_svs(tmp_path / "scan.svslide", image, downsamples=(4,))
    slide = open_slide(path)
    assert (slide.vendor, slide.backend) == ("aperio", "openslide") and slide.mpp == (0.25, 0.25)
    level = slide.levels[0]
    assert level.shape == (512, 768, 3) and level.dtype == np.uint8 and level.ndim == 3
    full = np.asarray(level)
    np.testing.assert_array_equal(level[10:50, 20:90], full[10:50, 20:90])
    np.testing.assert_array_equal(level[..., 1], full[..., 1])
    np.testing.assert_array_equal(level[5, 10:20], full[5, 10:20])
    np.testing.assert_array_equal(level[::4, ::8], full[::4, ::8])
    np.testing.assert_array_equal(slide.levels[1][0:10, 0:10], np.asarray(slide.levels[1])[0:10, 0:10])


def test_strided_reads_stay_bounded_and_agree(tmp_path, image, monkeypatch):
    from napari_autosam.io import openslide_levels

    monkeypatch.setattr(openslide_levels, "STRIDED_BLOCK", 64)  # many blocks on a small slide
    level = open_slide(write_svs(tmp_path / "scan.svslide", image, downsamples=(4,))).levels[0]
    np.testing.assert_array_equal(level[3:500:5, 7:700:9], np.asarray(level)[3:500:5, 7:700:9])
    resampled = Resampled(image, 2.0)
    sampled = resampled[::4, ::3]
    assert sampled.shape == (64, 128, 3)
    np.testing.assert_array_equal(sampled, image[1::8, 1::6][:64, :128])  # the source pixel at each centre


def test_generic_tiled_tiff_without_calibration(tmp_path, image):
    slide = open_slide(write_tiled_tiff(tmp_path / "plain.tif", image, downsamples=(2, 4)))
    assert slide.vendor == "generic-tiff" and slide.mpp is None and slide.objective_power is None
    assert slide.downsamples == [1.0, 2.0, 4.0]
    assert slide.metadata()["units"] == "uncalibrated: pixels"
    calibrated = open_slide(write_tiled_tiff(tmp_path / "cal.tif", image, downsamples=(2,), mpp=0.5))
    assert calibrated.mpp == pytest.approx((0.5, 0.5))


def test_pyramidal_ome_tiff_physical_size(tmp_path, image):
    slide = open_slide(write_ome_tiff(tmp_path / "s.ome.tif", image, downsamples=(2, 4), mpp=0.46))
    assert (slide.vendor, slide.backend) == ("ome-tiff", "tifffile")
    assert slide.mpp == pytest.approx((0.46, 0.46))
    assert [level.shape[:2] for level in slide.levels] == [(512, 768), (256, 384), (128, 192)]
    np.testing.assert_array_equal(slide.levels[0][:32, :32], image[:32, :32])  # zlib: lossless


def test_ome_zarr_folder(tmp_path, image):
    path = write_ome_zarr(tmp_path / "s.ome.zarr", image[:256, :256], levels=2, mpp=0.5, chunk=128)
    slide = open_slide(path)
    assert (slide.vendor, slide.backend) == ("ome-zarr", "zarr")
    assert slide.mpp == pytest.approx((0.5, 0.5)) and slide.downsamples == [1.0, 2.0]
    assert slide.levels[0].shape == (256, 256, 3)  # c, y, x on disk; channels last for RGB
    np.testing.assert_array_equal(np.asarray(slide.levels[0][10:20, 30:40]), image[10:20, 30:40])


def test_bad_slides_give_one_clear_line(tmp_path):
    corrupt = tmp_path / "broken.svs"
    corrupt.write_bytes(b"II*\x00" + b"\x00" * 64)
    no_multiscales = tmp_path / "plain.zarr"
    no_multiscales.mkdir()
    (no_multiscales / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {}}))
    cases = {corrupt: "broken.svs", tmp_path / "missing.ndpi": "no such file", no_multiscales: "multiscales",
             tmp_path: "not OME-Zarr"}
    for path, expected in cases.items():
        with pytest.raises(SlideReadError) as caught:
            open_slide(path)
        message = str(caught.value)
        assert expected in message and "\n" not in message and str(path.name) in message


# ------------------------------------------------------------------ working resolution


def test_working_image_at_a_level_is_the_level(svs):
    slide = open_slide(svs)
    array, resolution = working_image(slide, level=1)
    assert array is slide.levels[1]
    assert resolution == Resolution(level=1, downsample=4.0, mpp=(1.0, 1.0), factor=1.0)
    assert resolution.to_dict() == {"level": 1, "downsample": 4.0, "mpp": 1.0}
    assert working_image(slide, mpp=1.0)[1].level == 1  # a level that is the target is used as stored
    assert working_image(slide)[1] == Resolution(0, 1.0, (0.25, 0.25))


def test_working_image_by_mpp_resamples_the_finer_level(svs):
    slide = open_slide(svs)
    array, resolution = working_image(slide, mpp=0.5)
    assert isinstance(array, Resampled) and resolution.level == 0 and resolution.factor == 2.0
    assert array.shape == (256, 384, 3) and array.dtype == np.uint8 and resolution.mpp == (0.5, 0.5)
    base = np.asarray(slide.levels[0][:64, :96]).astype(float)
    expected = base.reshape(32, 2, 48, 2, 3).mean(axis=(1, 3))
    assert np.abs(array[:32, :48].astype(float) - expected).max() <= 0.5 + 1e-6  # a 2×2 area mean
    # windows read apart agree with one read (no seams between tiles)
    whole = array[:, :]
    np.testing.assert_array_equal(np.concatenate([array[:100], array[100:]]), whole)
    odd, res = working_image(slide, mpp=0.6)  # from level 0 (0.25), factor 2.4
    assert res.level == 0 and res.factor == pytest.approx(2.4) and odd.shape == (213, 320, 3)
    assert working_image(slide, mpp=2.0)[1].level == 1  # 2.0 reads level 1 (1.0 µm/px), not level 0


def test_working_resolution_errors(svs, tmp_path, image):
    slide = open_slide(svs)
    with pytest.raises(ResolutionError, match="finer than level 0.*0.25"):
        working_image(slide, mpp=0.1)
    with pytest.raises(ResolutionError, match=r"level 5 is out of range.*0\.\.2"):
        working_image(slide, level=5)
    with pytest.raises(ResolutionError, match="one of --mpp and --level"):
        working_image(slide, mpp=0.5, level=1)
    plain = open_slide(write_tiled_tiff(tmp_path / "plain.tif", image, downsamples=(2,)))
    with pytest.raises(ResolutionError, match=r"no µm/px.*--level"):
        working_image(plain, mpp=0.5)
    _, resolution = working_image(plain, level=1)
    assert resolution.mpp is None and resolution.to_dict() == {"level": 1, "downsample": 2.0}


def test_coordinates_between_level0_and_working():
    resolution = Resolution(level=1, downsample=4.0, mpp=(1.0, 1.0))
    np.testing.assert_allclose(to_working([[400, 1000]], resolution), [[100, 250]])
    np.testing.assert_allclose(to_level0(to_working([[13.0, 7.5]], resolution), resolution), [[13.0, 7.5]])
    assert region_to_working((401, 799, 3, 10), resolution) == (100, 200, 0, 3)  # rounded outwards
    assert region_to_working((0, 4000, 0, 4000), resolution, shape=(500, 600)) == (0, 500, 0, 600)
    assert region_to_level0((100, 200, 0, 3), resolution) == (400, 800, 0, 12)
    assert layer_transform(resolution, (0.25, 0.25)) == {"scale": [1.0, 1.0], "translate": [0.375, 0.375]}
