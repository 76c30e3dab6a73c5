"""The napari writer: labels to TIFF."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_autosam._writer import write_labels


def test_writes_labels_round_trip(tmp_path):
    labels = np.zeros((40, 50), np.int32)
    labels[5:10, 5:20] = 3
    labels[20:30, 10:40] = 300
    [written] = write_labels(str(tmp_path / "mask.tif"), labels, {"name": "AutoSAM"})
    assert written == str(tmp_path / "mask.tif")
    back = tifffile.imread(written)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, labels)


def test_adds_tif_suffix_and_keeps_stacks(tmp_path):
    stack = np.zeros((4, 16, 16), np.uint8)
    stack[2, 3:5, 3:5] = 1
    [written] = write_labels(str(tmp_path / "stack_labels"), stack, {})
    assert written.endswith("stack_labels.tif")
    np.testing.assert_array_equal(tifffile.imread(written), stack)


def test_multiscale_writes_full_resolution(tmp_path):
    full = np.ones((32, 32), np.uint8)
    [written] = write_labels(str(tmp_path / "m.tiff"), [full, full[::2, ::2]], {"multiscale": True})
    assert tifffile.imread(written).shape == (32, 32)


def test_rejects_float_labels(tmp_path):
    with pytest.raises(ValueError, match="integers"):
        write_labels(str(tmp_path / "f.tif"), np.zeros((4, 4), np.float32), {})
    assert not (tmp_path / "f.tif").exists()


def test_no_partial_files(tmp_path):
    write_labels(str(tmp_path / "a.tif"), np.ones((8, 8), np.uint8), {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]
