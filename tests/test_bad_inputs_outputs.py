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


def test_the_package_knows_its_own_tiff_outputs_and_not_look_alike_images(tmp_path):
    import numpy as np
    import tifffile

    from napari_autosam.io.own_outputs import own_output

    rng = np.random.default_rng(0)
    mask = (rng.random((40, 50)) > 0.5).astype(np.uint8)
    files = {"a_autosam.tif": mask, "a_h.tif": mask, "a_instances.tif": (mask * 7).astype(np.int32),
             "a_h_prob.tif": rng.random((40, 50)).astype(np.float32),
             "haem_h.tif": rng.integers(0, 255, (40, 50), dtype=np.uint8),  # a stain image named like an output
             "rgb_autosam.tif": rng.integers(0, 255, (40, 50, 3), dtype=np.uint8), "a.tif": mask}
    for name, array in files.items():
        tifffile.imwrite(tmp_path / name, array)
    found = {name: own_output(tmp_path / name) for name in files}
    assert found == {"a_autosam.tif": "a mask napari-autosam wrote (<stem>_autosam)",
                     "a_h.tif": "a mask napari-autosam wrote (<stem>_h)",
                     "a_instances.tif": "a label image napari-autosam wrote (<stem>_instances)",
                     "a_h_prob.tif": "a probability map napari-autosam wrote (<stem>_h_prob)",
                     "haem_h.tif": None, "rgb_autosam.tif": None, "a.tif": None}


def test_ctrl_c_while_the_program_exits_breaks_no_clean_up(tmp_path):
    import subprocess
    import sys

    code = ("import atexit, os, signal, time\n"
            "from napari_autosam.cli import _exit\n"
            "def clean():\n"
            "    os.kill(os.getpid(), signal.SIGINT)  # the user's Ctrl-C, during an atexit handler\n"
            "    time.sleep(0.3)\n"
            "    print('cleaned up', flush=True)\n"
            "atexit.register(clean)\n"
            "_exit(0)\n")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert (child.returncode, child.stdout.strip(), child.stderr) == (0, "cleaned up", "")
