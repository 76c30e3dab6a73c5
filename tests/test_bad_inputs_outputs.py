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


# ------------------------------------------------------------------ through the command line


def test_no_command_writes_over_its_input(tmp_path, capfd):
    import json

    import numpy as np
    import tifffile
    from badinput import assert_error, cli, gray_tif, snapshot

    image = gray_tif(tmp_path / "he.tif")
    labels = tmp_path / "labels.tif"
    tifffile.imwrite(labels, (np.arange(48 * 56).reshape(48, 56) % 3).astype(np.int32))
    geojson = tmp_path / "cells.geojson"
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"objectType": "detection"},
         "geometry": {"type": "Polygon", "coordinates": [[[2, 2], [20, 2], [20, 20], [2, 20], [2, 2]]]}}]}))
    before = snapshot(tmp_path)
    for argv in (("import-geojson", geojson, "--like", image, "--out", image),
                 ("import-geojson", geojson, "--like", image, "--out", geojson),
                 ("export-geojson", labels, "--out", labels),
                 ("review", image, "--out", image, "--sam", "tiny")):
        code, text = cli(capfd, *argv)
        assert_error(code, text, "nothing is written over an input")
        assert snapshot(tmp_path) == before, argv


def test_segment_skips_its_own_outputs_and_says_so(tmp_path, capfd):
    from badinput import cli, gray_tif

    data = tmp_path / "data"
    gray_tif(data / "a.tif")
    code, text = cli(capfd, "segment", data / "a.tif", "--out", data, "--sam", "tiny")
    assert code == 0, text
    first = sorted(p.name for p in data.iterdir())
    assert first == ["a.tif", "a_autosam.tif", "a_h.tif"]
    code, text = cli(capfd, "segment", *sorted(data.glob("*.tif")), "--out", data, "--sam", "tiny")  # data/*.tif again
    assert code == 0, text
    assert sorted(p.name for p in data.iterdir()) == first, "no a_autosam_autosam.tif"
    assert text.count("skipped") == 2 and "a_autosam.tif: a mask napari-autosam wrote" in text
    assert "a_h.tif: a mask napari-autosam wrote" in text
    assert "1 of 1 file done" in text


def test_segment_skips_its_own_ome_zarr_labels(tmp_path, capfd):
    from badinput import cli, gray_tif

    image = gray_tif(tmp_path / "g.tif")
    code, text = cli(capfd, "segment", image, "--out", tmp_path / "o", "--sam", "tiny", "--format", "ome-zarr")
    assert code == 0, text
    labels = tmp_path / "o" / "g_autosam.ome.zarr"
    assert labels.is_dir()
    code, text = cli(capfd, "segment", labels, "--out", tmp_path / "o2", "--sam", "tiny")
    assert code != 0 and "Traceback" not in text
    assert "g_autosam.ome.zarr: an OME-Zarr label image napari-autosam wrote" in text
    assert not (tmp_path / "o2").exists() or not any((tmp_path / "o2").iterdir())


def test_segment_checks_every_input_before_loading_sam(tmp_path, capfd, monkeypatch):
    from badinput import assert_error, cli

    import napari_autosam.sam.registry as registry

    monkeypatch.setattr(registry, "load_sam", lambda *a, **k: pytest.fail("SAM loaded before the inputs were checked"))
    for argv in (("segment", tmp_path / "missing.tif", "--out", tmp_path / "o"),
                 ("review", tmp_path / "missing.tif", "--out", tmp_path / "o.csv")):
        code, text = cli(capfd, *argv, "--sam", "tiny")
        assert_error(code, text, "missing.tif: no such file or folder")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.csv").exists()


def test_segment_option_that_does_not_fit_the_input_fails_before_work_and_leaves_nothing(tmp_path, capfd):
    import numpy as np
    import tifffile
    from badinput import assert_error, cli

    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.random.default_rng(0).integers(0, 255, (3, 48, 56), dtype=np.uint8), photometric="minisblack")
    code, text = cli(capfd, "segment", stack, "--out", tmp_path / "o", "--sam", "tiny", "--stack", "--geojson")
    assert_error(code, text, "stack.tif", "--geojson")
    assert "segmented" not in text.lower().split("error")[0]
    assert not list((tmp_path / "o").glob("*")) if (tmp_path / "o").exists() else True


def test_ome_zarr_image_with_a_missing_chunk_is_said(tmp_path, capfd):
    import numpy as np
    from badinput import cli

    from napari_autosam.io.ngff import missing_chunks

    zarr = pytest.importorskip("zarr")
    folder = tmp_path / "scan.ome.zarr"
    group = zarr.open_group(str(folder), mode="w", zarr_format=2)
    array = group.create_array("0", shape=(128, 128), chunks=(64, 64), dtype="uint8", fill_value=0)
    array[:] = np.random.default_rng(0).integers(1, 255, (128, 128), dtype=np.uint8)
    group.attrs["multiscales"] = [{"version": "0.4", "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
                                   "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1]}]}]}]
    (folder / "0" / "0.0").unlink()
    assert missing_chunks(zarr.open_array(str(folder / "0"), mode="r")).startswith("1 of 4 chunks")
    code, text = cli(capfd, "segment", folder, "--out", tmp_path / "o", "--sam", "tiny")
    assert "scan.ome.zarr" in text and "1 of 4 chunks of its full-resolution level have no data" in text


def test_train_init_of_a_class_model_says_what_it_continues_and_how_masks_are_read(tmp_path, capfd):
    import numpy as np
    from badinput import cli

    from napari_autosam.data.synthetic_classes import make_class_dataset
    from napari_autosam.io.images import write_tiff

    images, masks = make_class_dataset(2, (64, 64), size_range=(5, 8), seed=2)
    for i, (image, mask) in enumerate(zip(images, masks)):
        write_tiff(tmp_path / "images" / f"s{i}.tif", image)
        write_tiff(tmp_path / "masks" / f"s{i}.tif", np.minimum(mask, 2).astype(np.uint8))
        write_tiff(tmp_path / "binary" / f"s{i}.tif", (mask > 0).astype(np.uint8))  # 0/1 masks
    (tmp_path / "classes.csv").write_text("id,name\n1,round\n2,ring\n")
    fast = ["--sam", "tiny", "--steps", "1", "--h-steps", "1", "--min-steps", "0", "--input-size", "64",
            "--batch-size", "2", "--variants", "identity", "--device", "cpu", "--time-limit", "0"]
    code, text = cli(capfd, "train", "--images", tmp_path / "images", "--masks", tmp_path / "masks",
                     "--out", tmp_path / "models", "--classes", tmp_path / "classes.csv", *fast)
    assert code == 0, text
    code, text = cli(capfd, "train", "--images", tmp_path / "images", "--masks", tmp_path / "binary",
                     "--out", tmp_path / "models", "--init", tmp_path / "models" / "v0001.safetensors", *fast)
    assert code == 0, text
    assert ("note: --init v0001.safetensors is a model of 2 classes, so this run continues it: each mask's values "
            "are read as class ids (0 background, 1 round, 2 ring)") in text
    assert "the masks hold only 0 and 1, so only class 1 (round) is taught; the other 1 class (ring)" in text
