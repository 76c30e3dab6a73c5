"""Outputs against inputs: nothing the package writes replaces an input, its own outputs are not taken for
inputs, and options are checked against the input before any work.  Each test is one class of fault."""

from __future__ import annotations

import os

import pytest

from napari_autosam.io.overwrite import OverwriteError, check_outputs


def test_an_output_that_is_an_input_is_refused_however_it_is_spelt(tmp_path):
    image = tmp_path / "he.tif"
    image.write_bytes(b"image")
    (tmp_path / "link.tif").symlink_to(image)
    os.link(image, tmp_path / "hard.tif")
    for output in (image, tmp_path / "sub" / ".." / "he.tif", tmp_path / "link.tif", tmp_path / "hard.tif"):
        with pytest.raises(OverwriteError, match=r"is that input \(.*he\.tif\).*choose another --out"):
            check_outputs([tmp_path / "fine.tif", output], [image])


def test_an_output_that_would_replace_a_folder_holding_an_input_is_refused(tmp_path):
    image = tmp_path / "scan.ome.zarr" / "0" / "c" / "0"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"chunk")
    with pytest.raises(OverwriteError, match="would replace the folder"):
        check_outputs([tmp_path / "scan.ome.zarr"], [image])
    with pytest.raises(OverwriteError, match="inside that input"):  # labels written into the input's own folder
        check_outputs([tmp_path / "scan.ome.zarr" / "labels" / "x.ome.zarr"], [tmp_path / "scan.ome.zarr"])


def test_outputs_beside_the_inputs_are_fine(tmp_path):
    image = tmp_path / "he.tif"
    image.write_bytes(b"image")
    check_outputs([tmp_path / "he_autosam.tif", tmp_path / "he_h.tif", tmp_path / "out" / "he.tif"], [image])
    check_outputs([tmp_path / "models" / "v0001.safetensors"], [image])  # commands name files, not their folders
