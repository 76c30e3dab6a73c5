"""The training generator end to end with the tiny SAM: learning, caching, versions, warm start, cancel."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from napari_autosam.data.synthetic import make_nuclei_dataset
from napari_autosam.models.checkpoint import ModelCheckpoint, load_checkpoint
from napari_autosam.models.store import ModelStore
from napari_autosam.progress import CancelToken, run
from napari_autosam.sam.cache import EmbeddingCache
from napari_autosam.training import TrainConfig, evaluate, initial_model, samples_from_arrays, train

# Small and fast: 96² images, g at 64², batch 2, the paper's loss and optimiser.
CONFIG = TrainConfig(generator="hardnet_small", input_size=64, batch_size=2, lr=1e-3, h_lr=1e-3,
                     epochs=12, h_epochs=3, min_steps=0, patience=None, variants=("identity", "hflip"))


def _samples(n, seed):
    return samples_from_arrays(*zip(*make_nuclei_dataset(n, (96, 96), seed=seed)))


class EncoderCalls:
    """Counts images through SAM's image encoder."""

    def __init__(self, sam):
        self.count = 0
        self._handle = sam.image_encoder.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.count += inputs[0].shape[0]

    def close(self):
        self._handle.remove()


@pytest.fixture(scope="module")
def data():
    return {"train": _samples(4, seed=1), "val": _samples(2, seed=2), "test": _samples(2, seed=3)}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture(scope="module")
def cache(tiny_sam, cache_dir):
    """Embeddings shared by this module's runs, so each test image is encoded once."""
    return EmbeddingCache(tiny_sam, cache_dir)


@pytest.fixture(scope="module")
def trained(tiny_sam, data, cache_dir, tmp_path_factory):
    """One real training run shared by the tests below (the expensive part of this module)."""
    root = tmp_path_factory.mktemp("training")
    cache = EmbeddingCache(tiny_sam, cache_dir)
    calls = EncoderCalls(tiny_sam)
    events = []
    result = run(train(tiny_sam, data["train"], config=CONFIG, store=ModelStore(root / "models"),
                       val_samples=data["val"], cache=cache), events.append)
    calls.close()
    return {"result": result, "events": events, "encoded": calls.count, "store": ModelStore(root / "models")}


def test_training_clearly_improves_autosam_and_h_on_held_out_images(tiny_sam, data, trained, cache):
    untrained = run(evaluate(tiny_sam, initial_model(CONFIG), data["test"], cache=cache))
    after = run(evaluate(tiny_sam, trained["result"].model, data["test"], cache=cache))
    assert after.autosam.mean_dice > untrained.autosam.mean_dice + 0.2, (untrained.to_dict(), after.to_dict())
    assert after.h.mean_dice > untrained.h.mean_dice + 0.2, (untrained.to_dict(), after.to_dict())
    metrics = trained["result"].metrics
    assert metrics["val_dice_autosam"] > metrics["initial_val_dice_autosam"] + 0.2
    assert metrics["val_dice_h"] > metrics["initial_val_dice_h"] + 0.2


def test_the_encoder_runs_once_per_image_and_variant_never_per_step(trained, data):
    n_train, n_val = len(data["train"]), len(data["val"])
    assert trained["encoded"] == n_train * 2 + n_val  # identity + hflip per training image, identity for validation
    steps = [e for e in trained["events"] if e.phase == "train_g" and e.step > 0]
    assert max(e.step for e in steps) == 12 * 2  # 12 epochs × 2 steps, all on cached embeddings


def test_progress_events_carry_phase_epoch_loss_dice_and_time(trained):
    events = trained["events"]
    assert [p for p in dict.fromkeys(e.phase for e in events)] == ["encode", "train_g", "train_h", "save"]
    train_g = [e for e in events if e.phase == "train_g"]
    assert [e.step for e in train_g] == sorted(e.step for e in train_g)
    last = train_g[-1]
    assert {"epoch", "loss", "val_dice_autosam", "val_dice_h"} <= set(last.metrics)
    assert last.metrics["epoch"] == 12 and last.total == 24
    assert last.elapsed > 0 and train_g[5].eta is not None and train_g[5].eta > 0
    assert all(0.0 <= e.metrics["val_dice_autosam"] <= 1.0 for e in train_g)


def test_the_checkpoint_records_the_run_and_is_the_active_version(trained, data):
    result = trained["result"]
    assert result.version == "v0001" and trained["store"].active == "v0001" and not result.cancelled
    loaded = load_checkpoint(result.path)
    meta = loaded.metadata
    assert meta["sam_variant"] == "tiny" and meta["parent"] is None
    assert [t["name"] for t in meta["trained_on"]] == [s.name for s in data["train"]]
    assert [t["sha1"] for t in meta["validated_on"]] == [s.key for s in data["val"]]
    assert meta["training"]["generator"] == "hardnet_small" and meta["training"]["input_size"] == 64
    assert meta["training"]["variants"] == ["identity", "hflip"]
    assert meta["normalization"]["percentiles"] == [0.5, 99.5]
    assert meta["ended"] == {"g": "completed", "h": "completed"}
    assert meta["metrics"]["val_dice_autosam"] == pytest.approx(result.metrics["val_dice_autosam"])
    # the in-memory result and the file hold the same weights
    for name, value in loaded.prompt_generator.state_dict().items():
        torch.testing.assert_close(value, result.model.prompt_generator.state_dict()[name].cpu())


def test_warm_start_writes_a_new_version_and_reuses_the_disk_cache(tiny_sam, data, trained, cache_dir):
    first = trained["result"]
    before = hashlib.sha1(first.path.read_bytes()).hexdigest()
    init = load_checkpoint(first.path)
    init_state = {k: v.clone() for k, v in init.prompt_generator.state_dict().items()}
    calls = EncoderCalls(tiny_sam)
    cache = EmbeddingCache(tiny_sam, cache_dir)  # a new process would start like this
    config = TrainConfig(batch_size=2, epochs=1, h_epochs=1, min_steps=0, variants=("identity", "hflip"))
    second = run(train(tiny_sam, data["train"], config=config, init=init, store=trained["store"],
                       val_samples=data["val"][:1], cache=cache))
    calls.close()
    assert calls.count == 0  # every embedding came from the disk cache
    assert second.version == "v0002" and trained["store"].active == "v0002"
    assert hashlib.sha1(first.path.read_bytes()).hexdigest() == before  # never overwritten
    assert second.model.metadata["training"]["input_size"] == 64  # the warm start's architecture
    for name, value in init.prompt_generator.state_dict().items():
        torch.testing.assert_close(value, init_state[name])  # the caller's model is left alone
    # the best state is kept: fine-tuning never returns something worse on validation than where it began
    assert second.metrics["val_dice_autosam"] >= second.metrics["initial_val_dice_autosam"]
    second_by_path = run(train(tiny_sam, data["train"][:1], config=TrainConfig(epochs=0, h_epochs=0),
                               init=second.path, store=trained["store"], val_samples=data["val"][:1], cache=cache))
    assert second_by_path.model.metadata["parent"] == str(second.path)


def test_cancelling_mid_epoch_returns_a_saved_model_that_loads(tiny_sam, data, cache, tmp_path):
    cancel = CancelToken()
    config = TrainConfig(generator="hardnet_small", input_size=64, batch_size=1, epochs=3, h_epochs=3,
                         min_steps=0, variants=("identity",))
    seen = []

    def on_progress(event):
        seen.append(event)
        if event.phase == "train_g" and event.step == 2:  # halfway through epoch 1 (4 steps)
            cancel.cancel()

    out = tmp_path / "cancelled.safetensors"
    result = run(train(tiny_sam, data["train"], config=config, out=out, val_samples=data["val"], cache=cache,
                       cancel=cancel), on_progress)
    assert result.cancelled and result.path == out and result.version is None
    assert max(e.step for e in seen if e.phase == "train_g") == 2
    assert not any(e.phase == "train_h" for e in seen)
    loaded = load_checkpoint(out)
    assert loaded.metadata["cancelled"] is True and loaded.metadata["ended"] == {"g": "cancelled", "h": "skipped"}
    assert [h["epoch"] for h in result.history] == [0, 1]  # the partial epoch was validated too
    with torch.no_grad():
        prompt = loaded.prompt_generator(torch.zeros(1, 3, 64, 64))
        logits = loaded.surrogate(prompt)
    assert prompt.shape == (1, 256, 64, 64) and logits.shape == (1, 1, 256, 256)
    assert torch.isfinite(logits).all()


def test_cancelling_while_encoding_saves_the_starting_model_without_activating_it(tiny_sam, data, tmp_path):
    cancel = CancelToken()
    cancel.cancel()
    calls = EncoderCalls(tiny_sam)
    store = ModelStore(tmp_path / "models")
    result = run(train(tiny_sam, data["train"], config=CONFIG, store=store, val_samples=data["val"], cancel=cancel))
    calls.close()
    assert calls.count == 0 and result.cancelled and result.history == []
    assert result.model.metadata["ended"] == {"g": "cancelled", "h": "skipped"}
    assert store.versions() == ["v0001"] and not (store.root / "active.json").exists()
    start = initial_model(CONFIG)
    for name, value in load_checkpoint(result.path).prompt_generator.state_dict().items():
        torch.testing.assert_close(value, start.prompt_generator.state_dict()[name])


def test_early_stopping_waits_for_a_first_gain_then_keeps_the_best_state(tiny_sam, data, cache, tmp_path,
                                                                         monkeypatch):
    # Scripted validation scores (one per validation call): g's start, then h's epochs 0..7, then the final check.
    scores = iter([0.5, 0.3, 0.1, 0.1, 0.1, 0.2, 0.4, 0.35, 0.35, 0.35])
    states = []

    def scripted_validate(self, val):
        states.append({k: v.clone() for k, v in self.model.surrogate.state_dict().items()})
        value = next(scores)
        self.latest = {"val_dice_autosam": 0.5, "val_iou_autosam": 0.4, "val_dice_h": value, "val_iou_h": value}
        return self.latest

    monkeypatch.setattr("napari_autosam.training.stages.Trainer.validate", scripted_validate)
    config = TrainConfig(generator="hardnet_small", input_size=64, batch_size=2, epochs=0, h_epochs=20,
                         min_steps=0, patience=2, variants=("identity",))
    result = run(train(tiny_sam, data["train"][:2], config=config, out=tmp_path / "m.safetensors",
                       val_samples=data["val"][:1], cache=cache))
    h_rows = [row for row in result.history if row["stage"] == "h"]
    # epochs 1-4 are below the start (0.3) and do not count; 5 is the best; 6 and 7 exhaust the patience
    assert [row["epoch"] for row in h_rows] == list(range(8))
    assert result.model.metadata["ended"]["h"] == "early_stopping"
    assert result.metrics["best_epoch_h"] == 5
    best = states[1 + 5]  # the state validated at h's epoch 5
    for name, value in result.model.surrogate.state_dict().items():
        torch.testing.assert_close(value, best[name])
    assert not torch.equal(states[-2]["layers.0.weight"], best["layers.0.weight"])  # it did train past epoch 5


def test_bad_destinations_and_mismatched_models_fail_before_any_encoding(tiny_sam, data, tmp_path):
    calls = EncoderCalls(tiny_sam)
    existing = tmp_path / "model.safetensors"
    existing.write_bytes(b"x")
    with pytest.raises(ValueError, match="already exists"):
        run(train(tiny_sam, data["train"], config=CONFIG, out=existing))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        run(train(tiny_sam, data["train"], config=CONFIG, out=tmp_path / "file"))
    other = initial_model(CONFIG)
    other = ModelCheckpoint(other.prompt_generator, other.surrogate, {"sam_variant": "vit_b"})
    with pytest.raises(ValueError, match="vit_b"):
        run(train(tiny_sam, data["train"], config=CONFIG, init=other, out=tmp_path / "new.safetensors"))
    with pytest.raises(ValueError, match="hardnet85"):
        run(train(tiny_sam, data["train"], config=TrainConfig(generator="hardnet85"), init=initial_model(CONFIG),
                  out=tmp_path / "new.safetensors"))
    calls.close()
    assert calls.count == 0 and not (tmp_path / "new.safetensors").exists()


def test_a_single_image_is_validated_on_a_held_out_strip_cut_from_training(tiny_sam, data, cache, tmp_path):
    config = TrainConfig(generator="hardnet_small", input_size=64, steps=2, h_steps=0, variants=("identity",))
    events = []
    result = run(train(tiny_sam, data["train"][:1], config=config, out=tmp_path / "one.safetensors", cache=cache),
                 events.append)
    meta = result.model.metadata
    trained_on, validated_on = meta["trained_on"], meta["validated_on"]
    assert meta["trained_on_count"] == 1 and len(validated_on) == 1
    assert "strip" in validated_on[0]["name"] and trained_on[0]["sha1"] != validated_on[0]["sha1"]
    assert meta["validation_kind"] == "held-out strip" and result.metrics["val_kind"] == "held-out strip"
    assert "held-out strips" in meta["validation"]
    assert all(row["val_kind"] == "held-out strip" for row in result.history)
    assert any(e.metrics.get("val_kind") == "held-out strip" for e in events if e.phase == "train_g")
    assert np.isfinite(result.metrics["val_dice_autosam"])


def test_the_model_keeps_the_logit_gain_it_was_trained_under_and_its_probabilities_use_it(tiny_sam, data, trained, cache):
    """The tiny SAM's decoder gives small logits: g learns under a gain k > 1, and AutoSAM's
    probabilities at inference take the same k (masks unchanged), so confident objects are found."""
    from napari_autosam.inference import Segmenter
    from napari_autosam.losses import GAIN_MAX
    from napari_autosam.models.checkpoint import PROBABILITY_GAIN_KEY, probability_gain

    model = trained["result"].model
    gain = model.metadata[PROBABILITY_GAIN_KEY]
    assert 1.0 < gain <= GAIN_MAX and probability_gain(model.metadata) == gain == model.info.probability_gain
    image = data["test"][0].image
    with_gain = run(Segmenter(tiny_sam, model, cache=cache).segment(image))
    plain = run(Segmenter(tiny_sam, ModelCheckpoint(model.prompt_generator, model.surrogate,
                                                    {**model.metadata, PROBABILITY_GAIN_KEY: 1.0}),
                          cache=cache).segment(image))
    np.testing.assert_array_equal(with_gain.autosam_mask, plain.autosam_mask)
    p = np.clip(plain.autosam_prob.astype(np.float64), 1e-6, 1 - 1e-6)
    expected = 1 / (1 + np.exp(-gain * np.log(p / (1 - p))))
    np.testing.assert_allclose(with_gain.autosam_prob, expected, atol=2e-3)
    assert np.abs(with_gain.autosam_prob - 0.5).mean() > np.abs(plain.autosam_prob - 0.5).mean()


def test_probability_gain_of_old_or_damaged_metadata_is_one():
    from napari_autosam.losses import summary_gain
    from napari_autosam.models.checkpoint import PROBABILITY_GAIN_KEY, ModelInfo, probability_gain

    for metadata in ({}, {PROBABILITY_GAIN_KEY: "x"}, {PROBABILITY_GAIN_KEY: -2}, {PROBABILITY_GAIN_KEY: float("nan")},
                     {PROBABILITY_GAIN_KEY: None}):
        assert probability_gain(metadata) == 1.0 == ModelInfo.from_metadata(metadata).probability_gain
    assert summary_gain([], 3.0) == 3.0 and summary_gain([1.0] * 10 + [5.0, 6.0, 7.0] * 20) == 6.0
