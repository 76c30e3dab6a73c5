"""The napari reader on whole slides: lazy multiscale layers, µm scale, metadata, declining bad slides."""

from __future__ import annotations

import numpy as np
import pytest

from napari_autosam._reader import napari_get_reader
from napari_autosam.data.synthetic_slides import (
    pattern,
    write_ome_tiff,
    write_ome_zarr,
    write_svs,
    write_tiled_tiff,
)


@pytest.fixture(scope="module")
def image():
    return pattern(512, 640, seed=2)


def _layer(path):
    reader = napari_get_reader(str(path))
    assert callable(reader), f"no reader for {path}"
    [(data, kwargs, kind)] = reader(str(path))
    assert kind == "image"
    return data, kwargs


def test_svs_is_a_lazy_multiscale_layer_in_micrometres(tmp_path, image):
    data, kwargs = _layer(write_svs(tmp_path / "case 7.svs", image, downsamples=(4, 16)))
    assert kwargs["multiscale"] is True and kwargs["rgb"] is True and kwargs["name"] == "case 7"
    assert [tuple(level.shape) for level in data] == [(512, 640, 3), (128, 160, 3), (32, 40, 3)]
    assert not any(isinstance(level, np.ndarray) for level in data)
    assert kwargs["scale"] == [0.25, 0.25] and kwargs["units"] == ["µm", "µm"]
    meta = kwargs["metadata"]
    assert meta["source"].endswith("case 7.svs") and meta["vendor"] == "aperio"
    assert meta["mpp"] == [0.25, 0.25] and meta["objective_power"] == 40.0 and meta["units"] == "µm"


def test_uncalibrated_tiff_pyramid_says_pixels(tmp_path, image):
    _, kwargs = _layer(write_tiled_tiff(tmp_path / "plain.tif", image, downsamples=(2,)))
    assert kwargs["multiscale"] is True and kwargs["scale"] == [1.0, 1.0] and "units" not in kwargs
    assert kwargs["metadata"]["units"] == "uncalibrated: pixels" and kwargs["metadata"]["mpp"] is None


def test_ome_tiff_and_ome_zarr(tmp_path, image):
    data, kwargs = _layer(write_ome_tiff(tmp_path / "s.ome.tif", image, downsamples=(2,), mpp=0.5))
    assert kwargs["scale"] == pytest.approx([0.5, 0.5]) and len(data) == 2
    folder = write_ome_zarr(tmp_path / "s.ome.zarr", image[:256, :256], levels=2, mpp=0.5, chunk=128)
    data, kwargs = _layer(folder)
    assert kwargs["multiscale"] and kwargs["rgb"] and kwargs["scale"] == pytest.approx([0.5, 0.5])
    assert kwargs["name"] == "s" and data[0].shape == (256, 256, 3)


def test_bad_slides_are_declined(tmp_path):
    (tmp_path / "broken.svs").write_bytes(b"II*\x00" + b"\x00" * 64)
    (tmp_path / "broken.ndpi").write_bytes(b"not a slide")
    plain = tmp_path / "labels.zarr"
    plain.mkdir()
    (plain / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    for path in ("broken.svs", "broken.ndpi", "labels.zarr", "missing.svs"):
        assert napari_get_reader(str(tmp_path / path)) is None


def test_napari_asks_no_one_else_for_slide_only_endings():
    import npe2

    manager = npe2.PluginManager.instance()
    manager.discover()

    def readers(name):
        return {reader.plugin_name for reader in manager.iter_compatible_readers([name])}

    for name in ("case.mrxs", "case.vms", "case.svslide", "CASE.MRXS"):
        assert readers(name) == {"napari-autosam"}, name  # no chooser: only this plugin claims them
    for name in ("case.svs", "case.ndpi", "case.scn", "case.bif", "case.ome.tif", "case.ome.zarr"):
        assert readers(name) - {"napari"} == {"napari-autosam"}, name  # napari's builtin reader claims these too
