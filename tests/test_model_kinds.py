"""Model kinds registered for segmentation and training, the one logits->probabilities rule, the public
per-window steps of the Segmenter and the typed model metadata."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_autosam.inference import Segmenter, default_model
from napari_autosam.inference.segment_kinds import SEGMENT_KINDS, segment_kind
from napari_autosam.models.checkpoint import (
    MODEL_KINDS,
    PROBABILITY_GAIN_KEY,
    ModelCheckpoint,
    ModelInfo,
    RunRecord,
)
from napari_autosam.models.logits import to_probabilities
from napari_autosam.models.multiclass import ClassHeads
from napari_autosam.progress import run
from napari_autosam.sam.embedding import Geometry, frame_to_original
from napari_autosam.training.train_kinds import TRAIN_KINDS, config_kind, train_kind


def test_every_model_kind_has_a_segmentation_and_a_training():
    assert set(SEGMENT_KINDS) == set(TRAIN_KINDS) == set(MODEL_KINDS)
    assert segment_kind("depth").segment_stack is not None and segment_kind("binary").segment_stack is None
    assert train_kind("binary").train is train_kind("classes").train  # the 2D loop, shared
    with pytest.raises(ValueError, match="known"):
        segment_kind("nope")
    from napari_autosam.training import TrainConfig

    assert [config_kind(TrainConfig(**kw)) for kw in ({}, {"depth_adapters": True})] == ["binary", "depth"]


def test_a_checkpoint_names_its_kind():
    base = default_model()
    assert base.kind == "binary"
    assert ModelCheckpoint(base.prompt_generator, base.surrogate, {}, class_heads=ClassHeads(2)).kind == "classes"
    assert ModelCheckpoint(base.prompt_generator, base.surrogate, {}, adapters=torch.nn.Identity()).kind == "depth"


def test_probabilities_take_the_gain_and_pick_sigmoid_or_softmax():
    torch.manual_seed(0)
    geometry = Geometry(40, 30)
    logits = torch.randn(2, 1, 256, 256)
    back = frame_to_original(logits, geometry)
    assert torch.equal(to_probabilities(logits, geometry), torch.sigmoid(back))
    assert torch.equal(to_probabilities(logits, geometry, gain=3.0), torch.sigmoid(3.0 * back))
    fused = torch.randn(1, 3, 256, 256)
    prob = to_probabilities(fused, geometry)
    assert prob.shape == (1, 3, 40, 30)
    torch.testing.assert_close(prob.sum(1), torch.ones(1, 40, 30))


def test_model_info_reads_old_and_new_metadata():
    assert ModelInfo.from_metadata({}) == ModelInfo()
    info = ModelInfo.from_metadata({"sam_variant": "tiny", PROBABILITY_GAIN_KEY: 2.5, "untrained": True,
                                    "metrics": {"val_dice_h": 0.5}, "version": "v0002"})
    assert (info.sam_variant, info.probability_gain, info.untrained, info.metrics["val_dice_h"], info.version) == \
        ("tiny", 2.5, True, 0.5, "v0002")
    assert ModelInfo.from_metadata({PROBABILITY_GAIN_KEY: "bad", "metrics": None}).probability_gain == 1.0


def test_a_run_record_writes_the_keys_checkpoints_always_had():
    record = RunRecord("fp", None, [{"name": "a", "sha1": "x"}], [], "given", "given", None, {}, {}, {"g": "completed"},
                       False, None, [], None, None, probability_gain=2.0)
    meta = record.to_metadata()
    assert list(meta) == ["sam_fingerprint", "sam_checkpoint", "trained_on", "trained_on_count", "validated_on",
                          "validation", "validation_kind", "parent", "metrics", "training", "ended", "cancelled",
                          "normalization", "history", "version", "resolution", PROBABILITY_GAIN_KEY]
    assert meta["trained_on_count"] == 1 and "classes" not in meta
    assert ModelInfo.from_metadata(meta).probability_gain == 2.0


def test_window_probabilities_carry_the_gain_and_segment_batch_uses_them(tiny_sam):
    base = default_model()
    plain = Segmenter(tiny_sam, base)
    gained = Segmenter(tiny_sam, ModelCheckpoint(base.prompt_generator, base.surrogate, {PROBABILITY_GAIN_KEY: 4.0}),
                       cache=plain.cache)
    rgb = np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    embeddings = run(plain.embed_windows([rgb]))
    (a1, h1), = plain.window_probabilities([rgb], embeddings)[0]
    (a4, h4), = gained.window_probabilities([rgb], embeddings)[0]
    np.testing.assert_array_equal(h1, h4)  # h's probabilities take no gain
    np.testing.assert_array_equal(a1 > 0.5, a4 > 0.5)  # masks do not depend on it
    logit = np.log(np.clip(a1, 1e-6, 1 - 1e-6) / np.clip(1 - a1, 1e-6, 1))
    np.testing.assert_allclose(a4, 1 / (1 + np.exp(-4.0 * logit)), atol=1e-3)
    (none, hp), = plain.window_probabilities([rgb])[0]  # no embeddings: a preview, h only
    assert none is None and hp.shape == (48, 40)
    result = run(gained.segment(rgb))
    np.testing.assert_array_equal(result.autosam_prob, a4)
