"""``--mpp`` / ``--level`` on the command line: segment, train and evaluate slides at a working resolution."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_autosam.cli import main
from napari_autosam.data.synthetic import make_nuclei_image
from napari_autosam.data.synthetic_slides import write_ome_tiff, write_svs, write_tiled_tiff
from napari_autosam.models.checkpoint import read_metadata

TINY = ["--sam", "tiny", "--device", "cpu"]
FAST_TRAIN = [*TINY, "--epochs", "1", "--h-epochs", "1", "--min-steps", "0", "--input-size", "64", "--batch-size", "2",
              "--variants", "identity", "--val-fraction", "0.5"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NAPARI_AUTOSAM_CACHE", str(tmp_path_factory.getbasetemp() / "cli-cache"))


@pytest.fixture(scope="module")
def he():
    image, labels = make_nuclei_image((256, 384), stain="he", rgb=True, seed=3)
    return image, labels


@pytest.fixture(scope="module")
def svs(tmp_path_factory, he):
    return write_svs(tmp_path_factory.mktemp("slides") / "case.svs", he[0], downsamples=(2, 4))


def _mask(path):
    return tifffile.imread(path)


def test_segment_a_slide_at_a_target_mpp_and_at_a_level(svs, tmp_path, capsys):
    assert main(["segment", str(svs), "--out", str(tmp_path / "a"), "--mpp", "0.5", *TINY]) == 0
    out = capsys.readouterr().out
    assert "case.svs: 128×192 at 0.5 µm/px (level 1)" in out
    assert _mask(tmp_path / "a" / "case_autosam.tif").shape == (128, 192)
    assert main(["segment", str(svs), "--out", str(tmp_path / "b"), "--mpp", "0.75", *TINY]) == 0
    assert "case.svs: 85×128 at 0.75 µm/px (level 1 resampled 1.5×)" in capsys.readouterr().out
    assert _mask(tmp_path / "b" / "case_h.tif").shape == (85, 128)
    assert main(["segment", str(svs), "--out", str(tmp_path / "c"), "--level", "2", *TINY]) == 0
    assert _mask(tmp_path / "c" / "case_autosam.tif").shape == (64, 96)


def test_mpp_and_level_together_are_a_usage_error(svs, tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["segment", str(svs), "--out", str(tmp_path), "--mpp", "1", "--level", "1", *TINY])
    assert caught.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_bad_resolutions_and_slides_are_one_line_each(svs, he, tmp_path, capsys):
    plain = write_tiled_tiff(tmp_path / "plain.tif", he[0], downsamples=(2,))
    corrupt = tmp_path / "broken.svs"
    corrupt.write_bytes(b"II*\x00" + b"\x00" * 100)
    cases = [
        ([str(plain), "--mpp", "0.5"], "no µm/px (uncalibrated): choose a pyramid level (--level N)"),
        ([str(svs), "--mpp", "0.1"], "0.1 µm/px is finer than level 0 of case.svs (0.25 µm/px)"),
        ([str(svs), "--level", "7"], "level 7 is out of range: case.svs has levels 0..2"),
        ([str(corrupt)], "cannot read slide"),
    ]
    for extra, expected in cases:
        code = main(["segment", *extra, "--out", str(tmp_path / "out"), *TINY])
        err = capsys.readouterr().err.strip().splitlines()
        errors = [line for line in err if "error" in line]
        assert code == 1 and len(errors) == 1 and expected in errors[0], err
        assert "Traceback" not in "\n".join(err)
    assert not any((tmp_path / "out").glob("*_autosam.tif"))  # nothing written for failed inputs


def test_a_model_remembers_its_resolution_and_a_different_one_is_said(he, svs, tmp_path, capsys):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for seed in (1, 2):
        image, labels = make_nuclei_image((256, 256), stain="he", rgb=True, seed=seed)
        write_ome_tiff(images / f"r{seed}.ome.tif", image, downsamples=(2,), mpp=0.25)
        tifffile.imwrite(masks / f"r{seed}.tif", (labels > 0).astype(np.uint8))  # masks at full resolution
    model = tmp_path / "model.safetensors"
    assert main(["train", "--images", str(images), "--masks", str(masks), "--out", str(model), "--mpp", "0.5",
                 *FAST_TRAIN]) == 0
    recorded = read_metadata(model)["resolution"]
    assert recorded == {"level": 1, "downsample": 2.0, "mpp": 0.5}
    capsys.readouterr()
    # segmenting with the model defaults to 0.5 µm/px, quietly
    assert main(["segment", str(svs), "--out", str(tmp_path / "o1"), "--model", str(model), *TINY]) == 0
    captured = capsys.readouterr()
    assert "at 0.5 µm/px" in captured.out and "trained at" not in captured.err
    assert _mask(tmp_path / "o1" / "case_autosam.tif").shape == (128, 192)
    # choosing another resolution is said in one line
    assert main(["segment", str(svs), "--out", str(tmp_path / "o2"), "--model", str(model), "--level", "0", *TINY]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "trained at" in line]
    assert notes == ["note: case.svs: working at 0.25 µm/px (level 0); the model was trained at 0.5 µm/px"]
    # evaluate reads the images at the model's resolution too
    assert main(["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(model), "--json",
                 "--sam", "tiny", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(report["autosam"]["per_image"]) == 2 and 0.0 <= report["autosam"]["dice"] <= 1.0


def test_train_finds_vendor_slides_in_the_images_folder(tmp_path, capsys):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for seed in (1, 2):
        image, labels = make_nuclei_image((256, 256), stain="he", rgb=True, seed=seed)
        write_svs(images / f"s{seed}.svs", image, downsamples=(2,))
        tifffile.imwrite(masks / f"s{seed}_mask.tif", (labels > 0).astype(np.uint8))
    for extra, size in (([], 256), (["--level", "1"], 128)):
        model = tmp_path / f"model{size}.safetensors"
        assert main(["train", "--images", str(images), "--masks", str(masks), "--out", str(model), *extra,
                     *FAST_TRAIN]) == 0, capsys.readouterr().err
        metadata = read_metadata(model)
        used = {entry["name"].split("[")[0] for entry in metadata["trained_on"] + metadata["validated_on"]}
        assert used == {"s1", "s2"} and metadata["validation_kind"] == "held-out strip"
        assert metadata["resolution"] == {"level": 1 if extra else 0, "downsample": 2.0 if extra else 1.0,
                                          "mpp": 0.5 if extra else 0.25}


def test_train_refuses_a_slide_too_big_to_hold_whole_in_one_line(tmp_path, capsys, monkeypatch):
    from napari_autosam.jobs import reading as resolution

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    image, labels = make_nuclei_image((256, 256), stain="he", rgb=True, seed=1)
    write_svs(images / "big.svs", image, downsamples=(2,))
    tifffile.imwrite(masks / "big.tif", (labels > 0).astype(np.uint8))
    monkeypatch.setattr(resolution, "MAX_TRAIN_PIXELS", 200 * 200)  # level 0 (256²) is "too big", level 1 is not
    out = tmp_path / "model.safetensors"
    assert main(["train", "--images", str(images), "--masks", str(masks), "--out", str(out), *FAST_TRAIN]) != 0
    err = capsys.readouterr().err
    assert "big.svs" in err and "too big to train on whole" in err and "--level" in err and "Traceback" not in err
    assert not out.exists()
    assert main(["train", "--images", str(images), "--masks", str(masks), "--out", str(out), "--level", "1",
                 *FAST_TRAIN]) == 0
