"""Classes: the classes file, the class heads, the class loss/metrics, training, checkpoints and segmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from napari_autosam.class_sets import (
    ClassesError,
    class_choices,
    class_ids,
    classes_from_geojson,
    default_classes,
    label_colors,
    make_classes,
    read_classes,
    resolve_classes,
)
from napari_autosam.data.synthetic_classes import make_class_dataset, make_class_image
from napari_autosam.losses import class_loss, per_class_dice_iou
from napari_autosam.models.autosam import AutoSAM
from napari_autosam.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, save_copy
from napari_autosam.models.multiclass import ClassHeads, class_forward
from napari_autosam.models.prompt_generator import build_prompt_generator
from napari_autosam.models.surrogate import SurrogateDecoder
from napari_autosam.progress import run
from napari_autosam.sam.embedding import image_embedding, prepare_image
from napari_autosam.training import TrainConfig, samples_from_arrays, train
from napari_autosam.training.class_stage import class_targets
from napari_autosam.training.data import TrainingDataError

SIZE = 64
K = 3


# --- the classes file ------------------------------------------------------------------------------


def test_classes_file_formats_parse_to_the_same_classes(tmp_path):
    (tmp_path / "a.csv").write_text("id,name,color\n1,Tumor,#C80000\n2,Stroma,#00ff00\n")
    (tmp_path / "b.txt").write_text("# my classes\nTumor\nStroma\n")
    (tmp_path / "c.json").write_text(json.dumps({"classes": [{"id": 1, "name": "Tumor", "color": [200, 0, 0]},
                                                             {"id": 2, "name": "Stroma", "color": "#00FF00"}]}))
    a, b, c = (read_classes(tmp_path / n) for n in ("a.csv", "b.txt", "c.json"))
    assert a.names == b.names == c.names == ["Tumor", "Stroma"]
    assert a.to_metadata() == c.to_metadata() == [{"id": 1, "name": "Tumor", "color": "#c80000"},
                                                  {"id": 2, "name": "Stroma", "color": "#00ff00"}]
    assert b.classes[0].color.startswith("#") and len(b.classes[0].color) == 7  # palette colour


def test_classes_from_a_qupath_geojson_export(tmp_path):
    square = {"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}
    features = [{"type": "Feature", "geometry": square,
                 "properties": {"objectType": "annotation", "classification": {"name": n, "color": col}}}
                for n, col in (("Tumor", [200, 0, 0]), ("Stroma", [0, 200, 0]), ("Tumor", [200, 0, 0]))]
    path = tmp_path / "q.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    classes = classes_from_geojson(path)
    assert classes.names == ["Tumor", "Stroma"]
    assert classes.classes[1].rgb == (0, 200, 0)


@pytest.mark.parametrize("text, expected", [
    ("1,A\n3,B\n", "class 2 has id 3; expected id 2"),
    ("1,A\n2,A\n", "'A' appears twice"),
    ("1,A,red\n", "colour 'red' is not #rrggbb"),
    ("", "no classes"),
])
def test_bad_classes_files_are_one_line_naming_the_file(tmp_path, text, expected):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ClassesError, match=expected) as info:
        read_classes(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_class_ids_above_k_name_the_mask_and_the_id():
    classes = default_classes(2)
    assert class_ids(np.array([[0, 1], [2, 2]]), classes, "m.tif").dtype == np.uint8
    with pytest.raises(ClassesError, match=r"m\.tif: the mask holds class id 7 but --num-classes 2 defines 2"):
        class_ids(np.array([[0, 7]]), classes, "m.tif")
    with pytest.raises(ClassesError, match="negative|id -1"):
        class_ids(np.array([[0, -1]]), classes, "m.tif")


def test_one_class_is_the_binary_model_and_k_must_agree(tmp_path):
    assert resolve_classes(None, 1) is None and resolve_classes(None, None) is None
    (tmp_path / "c.txt").write_text("A\nB\n")
    assert len(resolve_classes(tmp_path / "c.txt", None)) == 2
    with pytest.raises(ClassesError, match="2 classes but --num-classes 3"):
        resolve_classes(tmp_path / "c.txt", 3)


def test_label_colors_and_choices_for_the_picker():
    classes = make_classes([("1", "A", "#ff0000"), ("2", "B", "#0000ff")])
    colors = label_colors(classes)
    assert colors[0][3] == 0 and colors[1] == (1.0, 0.0, 0.0, 1.0) and colors[2] == (0.0, 0.0, 1.0, 1.0)
    assert class_choices(classes) == [("1: A", 1), ("2: B", 2)] and class_choices(None) == [("foreground", 1)]


# --- synthetic data, loss and metrics ---------------------------------------------------------------


def test_synthetic_classes_differ_by_shape_not_brightness():
    image, classes, instances = make_class_image((160, 160), seed=1)
    gray = image.mean(-1)
    means = [gray[classes == k].mean() for k in (1, 2, 3)]
    assert all(np.count_nonzero(classes == k) > 100 for k in (1, 2, 3))
    assert max(means) - min(means) < 0.15 * (gray.max() - gray.min())  # close in brightness
    assert instances.max() >= 6 and set(np.unique(classes)) == {0, 1, 2, 3}


def test_class_loss_is_lower_for_the_right_classes():
    mask = np.zeros((32, 32), np.uint8)
    mask[4:12, 4:12], mask[20:28, 20:28] = 1, 2
    target = class_targets(mask, 2)[None].float() / 255
    assert target.shape == (1, 2, 256, 256)
    good = (target * 20 - 10)
    fused_good = torch.cat([-good.max(1, keepdim=True).values, good], 1)
    bad = good.flip(1)
    fused_bad = torch.cat([-bad.max(1, keepdim=True).values, bad], 1)
    assert class_loss(good, fused_good, target) < 0.5 * class_loss(bad, fused_bad, target)


def test_per_class_dice_iou_uses_the_one_dice():
    truth = np.array([[1, 1, 2, 0]])
    pred = np.array([[1, 2, 2, 0]])
    (d1, i1), (d2, i2), (d3, i3) = per_class_dice_iou(pred, truth, 3)
    assert (d1, i1) == (2 / 3, 0.5) and (d2, i2) == (2 / 3, 0.5) and (d3, i3) == (1.0, 1.0)


# --- the model ----------------------------------------------------------------------------------------


@pytest.fixture
def parts(tiny_sam):
    torch.manual_seed(0)
    model = AutoSAM(tiny_sam, build_prompt_generator("hardnet_small", input_size=SIZE), SurrogateDecoder())
    return model, ClassHeads(K)


@pytest.fixture
def batch(tiny_sam):
    images, masks = make_class_dataset(2, (48, 64))
    g_input = torch.cat([prepare_image(im, SIZE)[0] for im in images])
    embedding = torch.cat([image_embedding(tiny_sam, im) for im in images])
    target = torch.stack([class_targets(m, K) for m in masks]).float() / 255
    return g_input, embedding, target


def test_class_model_output_shapes(parts, batch):
    model, heads = parts
    g_input, embedding, _ = batch
    out = class_forward(model, heads, g_input, embedding)
    assert out.prompts.shape == (2, K, 256, 64, 64)
    assert out.sam_logits.shape == (2, K, 256, 256)
    assert out.fused.shape == out.h_fused.shape == (2, K + 1, 256, 256)
    assert out.h_logits.shape == (2, K, 256, 256)


def test_a_step_changes_g_and_heads_but_never_sam(parts, batch):
    model, heads = parts
    g_input, embedding, target = batch
    model.class_heads = heads
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = [*model.prompt_generator.parameters(), *model.surrogate.parameters(), *heads.parameters()]
    optimiser = torch.optim.Adam(params, lr=1e-2)
    out = class_forward(model, heads, g_input, embedding)
    loss = class_loss(out.sam_logits, out.fused, target) + class_loss(out.h_logits, out.h_fused, target)
    loss.backward()
    optimiser.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    for prefix in ("prompt_generator.", "surrogate.", "class_heads.prompt.", "class_heads.adapter.",
                   "class_heads.h_adapter."):
        assert any(k.startswith(prefix) for k in changed), prefix
    assert not any(k.startswith("sam.") for k in changed)
    assert all(p.grad is None for p in model.sam.parameters())


def test_checkpoint_round_trip_with_classes(parts, batch, tmp_path):
    model, heads = parts
    classes = default_classes(K)
    path = save_checkpoint(tmp_path / "c.safetensors", model.prompt_generator, model.surrogate, sam_variant="tiny",
                           class_heads=heads, classes=classes.to_metadata())
    loaded = load_checkpoint(path)
    assert loaded.metadata["classes"] == classes.to_metadata()
    assert all(torch.equal(a, b) for a, b in zip(heads.state_dict().values(), loaded.class_heads.state_dict().values()))
    copy = load_checkpoint(save_copy(loaded, tmp_path / "copy.safetensors"))
    assert copy.class_heads is not None and copy.metadata["classes"] == classes.to_metadata()
    g_input, embedding, _ = batch
    model.eval()
    again = AutoSAM(model.sam, loaded.prompt_generator, loaded.surrogate).eval()
    with torch.no_grad():
        assert torch.allclose(class_forward(model, heads.eval(), g_input, embedding).fused,
                              class_forward(again, loaded.class_heads, g_input, embedding).fused, atol=1e-5)
    with pytest.raises(ValueError, match="class heads need classes"):
        save_checkpoint(tmp_path / "x.safetensors", model.prompt_generator, class_heads=heads)


def test_a_binary_checkpoint_of_today_loads_as_the_binary_model(parts, batch, tmp_path):
    """A file written the way binary checkpoints were before classes (g.*, h.*, no "classes"): same outputs."""
    model, _ = parts
    meta = {"format": "napari-autosam/1", "sam_variant": "tiny", "prompt_generator": model.prompt_generator.config,
            "surrogate": model.surrogate.config}
    tensors = {f"g.{k}": v.contiguous() for k, v in model.prompt_generator.state_dict().items()}
    tensors.update({f"h.{k}": v.contiguous() for k, v in model.surrogate.state_dict().items()})
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata={"napari_autosam": json.dumps(meta)})
    loaded = load_checkpoint(tmp_path / "old.safetensors")
    assert loaded.class_heads is None and "classes" not in loaded.metadata
    g_input, embedding, _ = batch
    model.eval()
    with torch.no_grad():
        a = model(g_input, embedding)
        b = AutoSAM(model.sam, loaded.prompt_generator, loaded.surrogate).eval()(g_input, embedding)
    assert a.sam_logits.shape == (2, 1, 256, 256) and torch.equal(a.sam_logits, b.sam_logits)


def test_class_metadata_without_its_tensors_is_a_checkpoint_error(parts, tmp_path):
    model, _ = parts
    path = save_checkpoint(tmp_path / "c.safetensors", model.prompt_generator, model.surrogate,
                           classes=default_classes(2).to_metadata())
    with pytest.raises(CheckpointError, match="class heads weights do not fit"):
        load_checkpoint(path)


# --- training, evaluation, segmentation -----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_sam, tmp_path_factory):
    images, masks = make_class_dataset(3, (64, 64), size_range=(5, 8))
    classes = default_classes(K)
    samples = samples_from_arrays(images, masks, classes=classes)
    config = TrainConfig(generator="hardnet_small", input_size=SIZE, steps=2, h_steps=2, min_steps=0, batch_size=2,
                         variants=("identity",), classes=tuple(classes.to_metadata()), val_every=1)
    out = tmp_path_factory.mktemp("cls") / "m.safetensors"
    return run(train(tiny_sam, samples, config=config, out=out)), images, masks, samples


def test_training_a_class_model_records_per_class_dice(trained):
    result, _, _, samples = trained
    assert samples[0].mask.dtype == np.uint8 and max(int(s.mask.max()) for s in samples) == K  # ids kept
    loaded = load_checkpoint(result.path)
    assert loaded.class_heads is not None and len(loaded.metadata["classes"]) == K
    per_class = result.metrics["val_per_class"]
    assert len(per_class["autosam"]) == K and len(per_class["h"]) == K
    assert all(0.0 <= d <= 1.0 for d in per_class["autosam"])
    assert all("val_per_class" in row for row in result.history)


def test_class_masks_are_kept_and_checked_when_loading(tmp_path):
    images, masks = make_class_dataset(1, (32, 32))
    masks[0][0, 0] = 9
    with pytest.raises(TrainingDataError, match=r"class id 9 but --num-classes 3 defines 3"):
        samples_from_arrays(images, masks, classes=default_classes(3))
    binary = samples_from_arrays(images, masks)  # no classes: foreground as today
    assert binary[0].mask.dtype == bool


def test_evaluate_and_segment_a_class_model(trained, tiny_sam):
    from napari_autosam.inference import Segmenter
    from napari_autosam.inference.class_labels import instance_classes, segment_classes
    from napari_autosam.training import evaluate

    result, images, masks, _ = trained
    model = load_checkpoint(result.path)
    samples = samples_from_arrays(images[:1], masks[:1], classes=default_classes(K))
    report = run(evaluate(tiny_sam, model, samples)).to_dict()
    assert [r["id"] for r in report["per_class"]] == [1, 2, 3]
    assert report["autosam"]["dice"] == pytest.approx(np.mean([r["dice_autosam"] for r in report["per_class"]]))
    seg = Segmenter(tiny_sam, model)
    found = run(segment_classes(seg, images[0]))
    assert found.labels.shape == found.h_labels.shape == (64, 64) and found.labels.dtype == np.uint8
    assert found.labels.max() <= K and len(found.fractions) == K
    tiled = run(segment_classes(seg, np.tile(images[0], (2, 2, 1)), tile=64, overlap=16))  # blended tiles
    assert tiled.labels.shape == (128, 128) and tiled.h_labels.max() <= K
    stack = run(segment_classes(seg, np.stack(images[:2]), stack=True, preview=True))  # per slice, h only
    assert stack.labels is None and stack.h_labels.shape == (2, 64, 64)
    binary = run(seg.segment(images[0]))  # the binary outputs use 1 - P(background)
    assert binary.autosam_mask.shape == (64, 64)
    instances = np.array([[1, 1, 2], [0, 2, 2]])
    assert instance_classes(instances, np.array([[3, 0, 1], [2, 1, 2]])) == {1: 3, 2: 1}


def test_class_models_refuse_a_multi_process_run_in_one_line(tiny_sam):
    images, masks = make_class_dataset(1, (32, 32), size_range=(4, 6))
    classes = default_classes(K)
    samples = samples_from_arrays(images, masks, classes=classes)
    config = TrainConfig(generator="hardnet_small", input_size=SIZE, classes=tuple(classes.to_metadata()))
    with pytest.raises(ValueError, match="class models train in one process"):
        run(train(tiny_sam, samples, config=config, distributed=object()))


def test_per_class_dice_in_words_for_the_gui():
    from napari_autosam.class_sets import per_class_text

    meta = {"classes": make_classes(["Tumor", "Stroma"]).to_metadata(),
            "metrics": {"val_per_class": {"autosam": [0.812, 0.6449], "h": [0.7, 0.5]}}}
    assert per_class_text(meta) == "AutoSAM per class: Tumor 0.81, Stroma 0.64"
    assert per_class_text({"metrics": {"val_dice_autosam": 0.9}}) is None  # a binary model
    assert per_class_text({**meta, "metrics": {}}) is None  # no per-class figures (yet)
