"""The training routine: one generator that encodes, trains g, then h, and saves a new model version.

Stage 1 trains the prompt generator g through the frozen SAM mask decoder
(BCE + Dice on the decoder's 256² logits); stage 2 trains the surrogate
decoder h on g's output with g frozen (the paper; ``joint`` trains h with g
in stage 1 instead).  Stages are sized in steps and seconds (:mod:`.stages`),
keep the state with the best validation Dice, and can be cancelled between
any two steps: the routine then returns the best model so far, saved like a
finished one.  Samples bigger than the segmentation tile are cut into
windows of that size (:mod:`.windows`); with fewer than three images a
strip of each is held out for validation (:mod:`.holdout`).  SAM's image
encoder only runs in the ``encode`` phase.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence

import torch

from ..device import cpu_steps_in_bf16, module_precision, pick_device
from ..losses import summary_gain
from ..models.autosam import AutoSAM
from ..models.checkpoint import ModelCheckpoint
from ..progress import CancelToken, Progress, Stopwatch, Task
from . import class_stage
from .config import TrainConfig
from .data import Sample, TrainingDataError, check_samples, split_samples
from .holdout import STRIP_BELOW, VAL_KIND_GIVEN, VAL_KIND_IMAGES, VAL_KIND_SELF, VAL_KIND_STRIP, strip_split
from .output import Destination, TrainingRun, write_model
from .prepared import prepare
from .stages import Trainer
from .start import TrainResult, check_start_variant, initial_model, with_architecture
from .windows import window_samples


def _split(samples, val_samples, config: TrainConfig) -> tuple[list[Sample], list[Sample], str, str]:
    """``(train, validation, note, val_kind)``; see :mod:`.holdout` for the strips."""
    if val_samples is not None:
        if not list(val_samples):
            raise TrainingDataError("the validation set is empty (val_samples=[]); give validation samples, "
                                    "or None for a held-out split of the training images")
        return list(samples), check_samples(val_samples), "given", VAL_KIND_GIVEN
    sources = {s.source or s.name for s in samples}
    if len(sources) < STRIP_BELOW:
        parts = strip_split(samples, config.val_strip)
        if parts is not None:
            note = f"held-out strips: {config.val_strip:.0%} of each of {len(samples)} images, cut from training"
            return parts[0], parts[1], note, VAL_KIND_STRIP
        if len(samples) == 1:
            return list(samples), list(samples), "the training image (too small to hold out a strip)", VAL_KIND_SELF
    train, val = split_samples(samples, config.val_fraction, seed=config.seed)
    note = f"{len(val)} held-out images ({config.val_fraction:.0%} split, seed {config.seed})"
    return train, val, note, VAL_KIND_IMAGES


def train_images(
    sam,
    samples: Sequence[Sample],
    *,
    config: TrainConfig | None = None,
    init: ModelCheckpoint | str | os.PathLike | None = None,
    store=None,
    out: str | os.PathLike | None = None,
    val_samples: Sequence[Sample] | None = None,
    cache=None,
    cancel: CancelToken | None = None,
    distributed=None,
) -> Task[TrainResult]:
    """Fine-tune g (and h, and a class model's heads) on 2D ``samples``: the training of the binary and the
    classes kinds; a generator of progress events returning a :class:`TrainResult`.

    Callers use :func:`napari_autosam.training.train` (:mod:`.train_kinds`), which documents the arguments
    and the events; ``distributed`` (a :class:`~napari_autosam.distributed.sharded.ShardedRun`) is this
    process's share of a multi-process run, None for one process.
    """
    config = config or TrainConfig()
    device = pick_device(config.device) if config.device else next(sam.parameters()).device
    sam = sam.to(device)
    samples = check_samples(samples)
    cache = _run_cache(sam, cache)
    config = cpu_input_size(config, sam, device, warm_start=init is not None)
    start = initial_model(config, init=init, device=device)
    check_start_variant(start, sam)
    classes = _run_classes(config, start, samples, val_samples, distributed)
    resolved = config.resolved(device)
    if init is not None:  # the warm start's architecture wins over the device defaults
        resolved = with_architecture(resolved, start)
    train_set, val_set, val_note, val_kind = _split(samples, val_samples, resolved)
    train_set, val_set = window_samples(train_set, resolved.window), window_samples(val_set, resolved.window)
    own_train, own_val = (train_set, val_set) if distributed is None else distributed.shares(train_set, val_set, resolved)
    destination = Destination.open(store, out, sam=sam) if distributed is None or distributed.is_main else None
    try:
        model = class_stage.attach(AutoSAM(sam, start.prompt_generator, start.surrogate), start.class_heads)
        train_data, val_data = yield from _prepare_sets(own_train, own_val, resolved, cache, cancel, classes)
        if distributed is None:
            trainer = Trainer(model, resolved, device, cancel, val_kind, classes=classes)
        else:  # every process agrees on a cancel; train_data becomes the view of all shards
            train_data, val_data = distributed.joined(train_data, val_data)
            trainer = distributed.trainer(model, resolved, device, cancel, val_kind)
        ended, best = yield from _run_stages(trainer, resolved, train_data, val_data)
        cancelled = "cancelled" in ended.values()
        final = trainer.validate(val_data) if val_data is not None and trainer.history else {}
        run_info = TrainingRun(sam, resolved, train_set, val_set, val_note, val_kind, ended, best, trainer.history,
                               final=final, seconds=round(time.perf_counter() - trainer.started, 2),
                               parent=start.metadata, cancelled=cancelled, classes=classes,
                               probability_gain=summary_gain(trainer.gains, start.info.probability_gain,
                                                                upto=best.get("g", (0, len(trainer.gains)))[1]))
        write = write_model if distributed is None else distributed.write_model
        checkpoint, path, version = write(destination, model, run_info)
        yield Progress("save", 1, 1, f"saved {path}")
        return TrainResult(checkpoint, path, version, trainer.history, cancelled)
    finally:
        if destination is not None:
            destination.release()


def _run_cache(sam, cache):
    """The run's embedding cache: the given one (checked against ``sam``) or its own."""
    from ..sam.cache import EmbeddingCache, sam_fingerprint

    if cache is None:
        return EmbeddingCache(sam, max_items=1)  # this run keeps its own references
    if cache.fingerprint != sam_fingerprint(sam):
        raise ValueError("the embedding cache belongs to a different SAM")
    return cache


def _run_classes(config: TrainConfig, start: ModelCheckpoint, samples, val_samples, distributed):
    """The classes this run trains (None: a binary model), checked against the samples."""
    classes = class_stage.run_classes(config, start)
    if classes is not None:
        class_stage.check_class_samples(samples, classes)
        if val_samples is not None:
            class_stage.check_class_samples(val_samples, classes)
        if distributed is not None and getattr(distributed, "world_size", 2) > 1:
            raise ValueError("class models train in one process for now; run train without torchrun "
                             "(or with one process)")
    return classes


def _prepare_sets(own_train, own_val, resolved: TrainConfig, cache, cancel, classes):
    """The prepared training and validation sets (the ``encode`` phase); validation None when cancelled."""
    num_classes = len(classes) if classes is not None else None
    clock = Stopwatch(len(own_train) * len(resolved.variants) + len(own_val))
    train_data = yield from prepare(own_train, resolved.variants, cache=cache, input_size=resolved.input_size,
                                    clock=clock, cancel=cancel, num_classes=num_classes)
    val_data = None
    if train_data is not None:
        val_data = yield from prepare(own_val, ("identity",), cache=cache, input_size=resolved.input_size,
                                      clock=clock, done=clock.total - len(own_val), cancel=cancel,
                                      num_classes=num_classes)
    return train_data, val_data


def _run_stages(trainer, resolved: TrainConfig, train_data, val_data):
    """Stage g, then h (unless joint or none): ``(how each ended, {stage: (best epoch, best step)})``."""
    ended = {"g": "cancelled", "h": "skipped"}
    best = {}
    if val_data is not None:
        h_follows = resolved.stage_steps("h", len(train_data)) > 0
        ended["g"] = yield from trainer.stage("g", train_data, val_data, h_follows=h_follows)
        best["g"] = (trainer.best_epoch, trainer.best_step)
        if resolved.joint:
            ended["h"] = "joint"
        if ended["g"] != "cancelled" and h_follows:
            ended["h"] = yield from trainer.stage("h", train_data, val_data)
            best["h"] = (trainer.best_epoch, trainer.best_step)
    return ended, best


def cpu_input_size(config: TrainConfig, sam, device, *, warm_start: bool) -> TrainConfig:
    """A new binary g on a CPU whose steps run in bfloat16 reads 512², elsewhere on a CPU 256² (unless told).

    On real H&E (512² tiles, ten of them, the CLI's 170 s) g at 512² reached AutoSAM 0.780 and h 0.759
    in 60 + 28 steps, against 0.741-0.747 and 0.735-0.739 at 256² in 160 + 84 steps (docs/training.md): the
    nuclei keep their size.  A float32 CPU pays about three times as much per step, which the limit
    does not allow, and class models train in float32: both keep 256².  A warm start keeps its model's.
    """
    if warm_start or config.input_size is not None or config.classes or torch.device(device).type != "cpu":
        return config
    return dataclasses.replace(config, input_size=512 if cpu_steps_in_bf16(module_precision(sam)) else 256)
