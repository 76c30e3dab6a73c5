"""``napari-autosam train`` and ``napari-autosam evaluate`` on folders of synthetic images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_autosam.cli import main
from napari_autosam.data.synthetic import write_dataset
from napari_autosam.io.images import write_tiff
from napari_autosam.models.checkpoint import load_checkpoint
from napari_autosam.models.store import ModelStore

FAST = ["--sam", "tiny", "--epochs", "1", "--h-epochs", "1", "--min-steps", "0", "--input-size", "64", "--batch-size", "2",
        "--variants", "identity", "--device", "cpu"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), 3, (64, 64), seed=4)


def test_train_writes_new_versions_and_evaluate_reports_both_models(dataset, tmp_path, capsys):
    images, masks = dataset
    store_dir = tmp_path / "models"
    args = ["train", "--images", str(images), "--masks", str(masks), "--out", str(store_dir),
            "--cache-dir", str(tmp_path / "emb"), *FAST]
    assert main([*args, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["version"] == "v0001" and summary["path"] == str(store_dir / "v0001.safetensors")
    assert summary["trained_on_count"] == 2 and not summary["cancelled"]  # 3 images, one held out
    assert {"val_dice_autosam", "val_dice_h"} <= set(summary["metrics"])
    assert load_checkpoint(summary["path"]).sam_variant == "tiny"

    assert main([*args, "--epochs", "1", "--h-epochs", "0"]) == 0  # a second run adds v0002, prints where
    out = capsys.readouterr().out
    assert f"model: {store_dir / 'v0002.safetensors'} (version v0002)" in out
    assert "val_dice_autosam:" in out
    assert ModelStore(store_dir).versions() == ["v0001", "v0002"] and ModelStore(store_dir).active == "v0002"

    assert main(["evaluate", "--images", str(images), "--masks", str(masks), "--model", summary["path"],
                 "--json", "--cache-dir", str(tmp_path / "emb")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"autosam", "h"}
    for key in ("autosam", "h"):
        assert set(report[key]) == {"dice", "iou", "per_image"}
        assert [row["name"] for row in report[key]["per_image"]] == ["img_000", "img_001", "img_002"]
        dice = [row["dice"] for row in report[key]["per_image"]]
        assert report[key]["dice"] == pytest.approx(np.mean(dice))
        assert all(0 <= row["iou"] <= row["dice"] <= 1 for row in report[key]["per_image"])

    assert main(["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(store_dir)]) == 0
    table = capsys.readouterr().out
    assert "v0002.safetensors" in table and "mean" in table and "img_001" in table


def test_bad_inputs_are_one_line_errors_naming_the_file(dataset, tmp_path, capsys):
    images, masks = dataset
    bad_masks = tmp_path / "masks"
    bad_masks.mkdir()
    for path in sorted(masks.iterdir()):
        (bad_masks / path.name).write_bytes(path.read_bytes())
    write_tiff(bad_masks / "img_001.tif", np.ones((50, 64), np.uint8))
    code = main(["train", "--images", str(images), "--masks", str(bad_masks), "--out", str(tmp_path / "m"), *FAST])
    err = capsys.readouterr().err
    assert code == 1 and "img_001.tif" in err and "Traceback" not in err and not (tmp_path / "m").exists()

    existing = tmp_path / "model.safetensors"
    existing.write_bytes(b"")
    code = main(["train", "--images", str(images), "--masks", str(masks), "--out", str(existing), *FAST])
    assert code == 1 and "already exists" in capsys.readouterr().err

    code = main(["evaluate", "--images", str(images), "--masks", str(masks), "--model", str(tmp_path / "none")])
    assert code == 1 and "no model checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("option, value, names", [("--generator", "hardnet9000", "hardnet_small"),
                                                   ("--preset", "fancy", "monuseg")])
def test_unknown_generator_or_preset_is_one_line_naming_the_choices(dataset, tmp_path, capsys, option, value, names):
    images, masks = dataset
    code = main(["train", "--images", str(images), "--masks", str(masks), "--out", str(tmp_path / "m"), *FAST,
                 option, value])
    err = capsys.readouterr().err
    assert code != 0 and option in err and value in err and names in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()
