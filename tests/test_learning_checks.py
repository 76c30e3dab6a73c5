"""Learning happens: class and depth training each beat their untrained start by a margin on a small set.

Scored with ``evaluate`` on the images trained on, before and after, so the
run's own choice of its best state (where the start is a candidate) cannot
make the check pass by itself.
"""

from __future__ import annotations

import pytest

from napari_autosam.progress import run
from napari_autosam.training import TrainConfig, evaluate, samples_from_arrays, train
from napari_autosam.training.engine import initial_model

#: How much better than the untrained start the trained model must be (mean Dice).
MARGIN = 0.1


@pytest.mark.heavy  # minutes on 2 shared cores
def test_class_training_beats_its_untrained_start(tiny_sam, tmp_path):
    from napari_autosam.class_sets import make_classes
    from napari_autosam.data.synthetic_classes import make_class_dataset

    images, masks = make_class_dataset(2, (64, 64), num_classes=2, size_range=(6, 9), seed=5)
    classes = make_classes(["round", "ring"], "test")
    samples = samples_from_arrays(images, masks, classes=classes)
    config = TrainConfig(generator="hardnet_small", input_size=64, steps=30, h_steps=20, min_steps=0, batch_size=2,
                         variants=("identity",), lr=1e-3, h_lr=1e-3, patience=None,
                         classes=tuple(classes.to_metadata()), device="cpu")
    start = initial_model(config, device="cpu")
    start.metadata.update(classes=classes.to_metadata(), sam_variant="tiny")
    before = run(evaluate(tiny_sam, start, samples)).to_dict()
    result = run(train(tiny_sam, samples, config=config, out=tmp_path / "m.safetensors", val_samples=samples))
    after = run(evaluate(tiny_sam, result.model, samples)).to_dict()
    assert after["autosam"]["dice"] >= before["autosam"]["dice"] + MARGIN, (before["autosam"], after["autosam"])
    assert after["h"]["dice"] >= before["h"]["dice"] + MARGIN, (before["h"], after["h"])


@pytest.mark.heavy
@pytest.mark.xfail(strict=True, reason="measured: 20 depth steps on the tiny SAM stay at the untrained Dice "
                   "(0.005 -> 0.005, load 25); the depth loss has no logit gain (docs/method.md): an open finding")
def test_depth_training_beats_its_untrained_start(tiny_sam, tmp_path):
    from napari_autosam.data.synthetic import make_depth_stack

    image, mask = make_depth_stack(depth=3, shape=(48, 48), n_tubes=1, n_beads=1, radius_range=(6, 8), seed=3)
    samples = samples_from_arrays([image], [mask], names=["tubes"])
    config = TrainConfig(depth_adapters=True, depth_window=2, steps=20, val_every=10, generator="hardnet_small",
                         input_size=64, lr=1e-3, patience=None, device="cpu")
    start = initial_model(config, device="cpu")
    start.metadata["sam_variant"] = "tiny"
    before = run(evaluate(tiny_sam, start, samples)).to_dict()
    result = run(train(tiny_sam, samples, config=config, out=tmp_path / "d.safetensors", val_samples=samples))
    after = run(evaluate(tiny_sam, result.model, samples)).to_dict()
    assert after["autosam"]["dice"] >= before["autosam"]["dice"] + MARGIN, (before["autosam"], after["autosam"])
