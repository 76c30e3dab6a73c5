"""``train --classes/--num-classes``, ``evaluate`` per class and ``segment``'s class labels; bad class inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from badinput import assert_error, assert_nothing_changed, cli, snapshot

from napari_autosam.data.synthetic_classes import make_class_dataset
from napari_autosam.io.images import write_tiff

FAST = ["--sam", "tiny", "--steps", "1", "--h-steps", "1", "--min-steps", "0", "--input-size", "64",
        "--batch-size", "2", "--variants", "identity", "--device", "cpu", "--time-limit", "0"]


@pytest.fixture(scope="module")
def class_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("classes")
    images, masks = make_class_dataset(3, (64, 64), size_range=(5, 8), seed=2)
    for i, (image, mask) in enumerate(zip(images, masks)):
        write_tiff(root / "images" / f"s{i}.tif", image)
        write_tiff(root / "masks" / f"s{i}.tif", mask)
    (root / "classes.csv").write_text("id,name,color\n1,round,#ff0000\n2,ring,#00ff00\n3,rod,#0000ff\n")
    return root


def test_train_evaluate_segment_with_classes(class_data, tmp_path, capfd):
    models = tmp_path / "models"
    code, text = cli(capfd, "train", "--images", class_data / "images", "--masks", class_data / "masks",
                     "--out", models, "--classes", class_data / "classes.csv", *FAST)
    assert code == 0, text
    model = models / "v0001.safetensors"
    code, text = cli(capfd, "evaluate", "--images", class_data / "images", "--masks", class_data / "masks",
                     "--model", model, "--sam", "tiny", "--json")
    assert code == 0, text
    report = json.loads(next(line for line in text.splitlines() if line.startswith("{")))
    assert [(r["id"], r["name"]) for r in report["per_class"]] == [(1, "round"), (2, "ring"), (3, "rod")]
    assert all(0 <= r["dice_autosam"] <= 1 and 0 <= r["dice_h"] <= 1 for r in report["per_class"])
    out = tmp_path / "seg"
    code, text = cli(capfd, "segment", class_data / "images" / "s0.tif", "--out", out, "--model", model,
                     "--sam", "tiny", "--mode", "instances", "--no-refine", "--geojson")
    assert code == 0, text
    labels = tifffile.imread(out / "s0_classes.tif")
    assert labels.shape == (64, 64) and labels.dtype == np.uint8 and labels.max() <= 3
    assert (out / "s0_h_classes.tif").is_file()
    assert (out / "s0_instance_classes.csv").read_text().startswith("label,class_id,class_name")
    assert json.loads((out / "s0_classes.geojson").read_text())["type"] == "FeatureCollection"


@pytest.mark.parametrize("setup, expected", [
    ("id_above_k", ["s1.tif", "class id 9", "classes.csv"]),
    ("file_does_not_match", ["s0.tif", "class id 3", "two.csv", "2 classes"]),
    ("bad_file", ["broken.csv", "expected id 2"]),
    ("k_disagrees", ["classes.csv", "--num-classes 2"]),
    ("missing_file", ["nowhere.csv", "no such classes file"]),
])
def test_bad_class_inputs_are_one_line_and_write_nothing(class_data, tmp_path, capfd, setup, expected):
    masks, classes, extra = class_data / "masks", class_data / "classes.csv", []
    if setup == "id_above_k":
        masks = tmp_path / "masks"
        for path in (class_data / "masks").iterdir():
            mask = tifffile.imread(path)
            if path.name == "s1.tif":
                mask[0, 0] = 9
            write_tiff(masks / path.name, mask)
    elif setup == "file_does_not_match":
        classes = tmp_path / "two.csv"
        classes.write_text("1,round\n2,ring\n")
    elif setup == "bad_file":
        classes = tmp_path / "broken.csv"
        classes.write_text("1,round\n3,rod\n")
    elif setup == "k_disagrees":
        extra = ["--num-classes", "2"]
    elif setup == "missing_file":
        classes = tmp_path / "nowhere.csv"
    out = tmp_path / "models"
    before = snapshot(tmp_path)
    code, text = cli(capfd, "train", "--images", class_data / "images", "--masks", masks, "--out", out,
                     "--classes", classes, *extra, *FAST)
    assert_error(code, text, *expected)
    assert len([line for line in text.splitlines() if "error" in line]) == 1
    assert_nothing_changed(before, snapshot(tmp_path))
