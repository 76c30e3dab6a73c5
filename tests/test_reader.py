"""The napari reader: which files it takes, and the layer data it returns (no viewer needed)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from skimage import io as skio

from napari_autosam import _reader
from napari_autosam._reader import napari_get_reader


def _read(path):
    reader = napari_get_reader(str(path))
    assert callable(reader), f"no reader for {path}"
    return reader(str(path))


def test_declines_what_it_does_not_handle(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.tif").write_bytes(b"II*\x00garbage")
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    assert napari_get_reader(str(tmp_path / "broken.tif")) is None
    assert napari_get_reader(str(tmp_path / "missing.tif")) is None
    assert napari_get_reader(str(tmp_path)) is None
    assert napari_get_reader([str(tmp_path / "notes.txt")]) is None


def test_gray_2d_tiff(tmp_path):
    image = np.arange(64 * 80, dtype=np.uint16).reshape(64, 80)
    tifffile.imwrite(tmp_path / "cells.tif", image)
    [(data, kwargs, kind)] = _read(tmp_path / "cells.tif")
    assert kind == "image" and kwargs["name"] == "cells" and kwargs["rgb"] is False
    np.testing.assert_array_equal(np.asarray(data), image)
    assert kwargs["metadata"]["source"].endswith("cells.tif")


def test_rgb_ome_tiff(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (50, 60, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "slide.ome.tif", image, photometric="rgb")
    [(data, kwargs, _)] = _read(tmp_path / "slide.ome.tif")
    assert kwargs["rgb"] is True and kwargs["name"] == "slide"
    np.testing.assert_array_equal(np.asarray(data), image)


def test_multichannel_splits_channels(tmp_path):
    image = np.random.default_rng(1).random((3, 40, 50)).astype(np.float32)
    tifffile.imwrite(tmp_path / "multi.tif", image)
    [(data, kwargs, _)] = _read(tmp_path / "multi.tif")
    assert kwargs["channel_axis"] == 0
    assert kwargs["name"] == ["multi [ch0]", "multi [ch1]", "multi [ch2]"]
    assert "rgb" not in kwargs
    assert data.shape == (3, 40, 50)


def test_stack_gets_a_slider(tmp_path):
    stack = np.zeros((9, 32, 32), np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    [(data, kwargs, _)] = _read(tmp_path / "stack.tif")
    assert data.shape == (9, 32, 32) and kwargs["metadata"]["kind"] == "stack" and kwargs["rgb"] is False


def test_png_and_jpeg(tmp_path):
    image = np.random.default_rng(2).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    skio.imsave(tmp_path / "a.png", image, check_contrast=False)
    skio.imsave(tmp_path / "b.jpg", image, check_contrast=False)
    [(png, kw_png, _)] = _read(tmp_path / "a.png")
    np.testing.assert_array_equal(png, image)
    assert kw_png["rgb"] is True
    [(jpg, _, _)] = _read(tmp_path / "b.jpg")
    assert jpg.shape == (30, 40, 3)
    layers = napari_get_reader([str(tmp_path / "a.png"), str(tmp_path / "b.jpg")])([str(tmp_path / "a.png"), str(tmp_path / "b.jpg")])
    assert [kw["name"] for _, kw, _ in layers] == ["a", "b"]


def test_pyramid_opens_as_lazy_multiscale(tmp_path):
    base = np.random.default_rng(3).integers(0, 255, (512, 512), dtype=np.uint8)
    with tifffile.TiffWriter(tmp_path / "pyramid.ome.tif") as tif:
        tif.write(base, subifds=2, tile=(128, 128))
        tif.write(base[::2, ::2], subfiletype=1, tile=(128, 128))
        tif.write(base[::4, ::4], subfiletype=1, tile=(128, 128))
    [(levels, kwargs, _)] = _read(tmp_path / "pyramid.ome.tif")
    assert kwargs["multiscale"] is True
    assert [tuple(level.shape) for level in levels] == [(512, 512), (256, 256), (128, 128)]
    assert not isinstance(levels[0], np.ndarray)  # read on demand
    np.testing.assert_array_equal(np.asarray(levels[0][100:110, 200:220]), base[100:110, 200:220])


def test_big_flat_tiff_is_lazy(tmp_path, monkeypatch):
    image = np.arange(200 * 300, dtype=np.uint16).reshape(200, 300)
    tifffile.imwrite(tmp_path / "big.tif", image)
    monkeypatch.setattr(_reader, "LAZY_BYTES", 1000)
    [(data, kwargs, _)] = _read(tmp_path / "big.tif")
    assert isinstance(data, np.memmap) or not isinstance(data, np.ndarray)
    assert "multiscale" not in kwargs
    np.testing.assert_array_equal(np.asarray(data[10:20, 30:40]), image[10:20, 30:40])


@pytest.mark.parametrize("suffix", [".TIF", ".tiff"])
def test_suffix_case_and_variants(tmp_path, suffix):
    tifffile.imwrite(tmp_path / f"x{suffix}", np.ones((8, 8), np.uint8))
    assert napari_get_reader(str(tmp_path / f"x{suffix}")) is not None
