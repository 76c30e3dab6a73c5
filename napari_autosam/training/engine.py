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

import copy
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..device import pick_device
from ..losses import probability_gain, summary_gain
from ..models.autosam import AutoSAM
from ..models.checkpoint import ModelCheckpoint, load_checkpoint
from ..models.prompt_generator import build_prompt_generator
from ..models.surrogate import SurrogateDecoder
from ..progress import CancelToken, Progress, Stopwatch, Task
from . import classwise
from .config import TrainConfig
from .data import Sample, TrainingDataError, check_samples, split_samples
from .holdout import STRIP_BELOW, VAL_KIND_GIVEN, VAL_KIND_IMAGES, VAL_KIND_SELF, VAL_KIND_STRIP, strip_split
from .output import Destination, write_model
from .prepared import prepare
from .stages import Trainer
from .windows import window_samples


@dataclass
class TrainResult:
    """What a training run returns.

    model : the trained g and h (eval mode, on the training device) with the saved metadata
    path : the checkpoint file written
    version : its name in the model store (``"v0003"``), or None for a plain file
    history : one dict per validation (stage, step, epoch, seconds, loss, val_kind, val_dice_autosam, val_dice_h, …)
    cancelled : True when the run was cancelled and returned its best model so far
    """

    model: ModelCheckpoint
    path: Path
    version: str | None
    history: list[dict]
    cancelled: bool

    @property
    def metrics(self) -> dict:
        return dict(self.model.metadata.get("metrics", {}))


def initial_model(
    config: TrainConfig, *, init: ModelCheckpoint | str | os.PathLike | None = None, device="cpu"
) -> ModelCheckpoint:
    """The model training starts from: a copy of ``init``, or new g and h seeded by ``config.seed``.

    New models follow ``config`` (device defaults filled in for ``device``).
    A warm start keeps the architecture of ``init``; a ``generator`` or
    ``input_size`` set explicitly in ``config`` that differs is an error.
    """
    if init is None:
        config = config.resolved(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            g = build_prompt_generator(config.generator, input_size=config.input_size,
                                       pretrained_backbone=config.pretrained_backbone, imagenet=True,
                                       input_transform=config.g_input)
            h = SurrogateDecoder()
        return ModelCheckpoint(g.to(device), h.to(device), {},
                               class_heads=classwise.starting_heads(config, None, device))
    parent = load_checkpoint(init, device=device) if not isinstance(init, ModelCheckpoint) else init
    g = copy.deepcopy(parent.prompt_generator).to(device)  # never train the caller's live model
    if config.generator not in (None, g.config["name"]) or config.input_size not in (None, g.input_size):
        raise ValueError(
            f"the initial model is {g.config['name']} at input size {g.input_size}; "
            f"it cannot be fine-tuned as {config.generator} at {config.input_size} (leave those settings unset)"
        )
    if config.g_input not in (None, g.input_transform.name):
        raise ValueError(f"the initial model reads {g.input_transform.name} input; it cannot be fine-tuned "
                         f"with --g-input {config.g_input} (leave it unset)")
    if parent.surrogate is not None:
        h = copy.deepcopy(parent.surrogate).to(device)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            h = SurrogateDecoder().to(device)
    meta = dict(parent.metadata)
    if not isinstance(init, ModelCheckpoint):
        meta["path"] = str(init)
    return ModelCheckpoint(g, h, meta, class_heads=classwise.starting_heads(config, parent, device))


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


def train(
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
    """Fine-tune g (and h) on ``samples``; a generator of progress events returning a :class:`TrainResult`.

    Parameters
    ----------
    sam : segment_anything.modeling.Sam
        The frozen SAM (``load_sam``); its device is used unless ``config.device`` says otherwise.
    samples : list of Sample
        From :func:`load_samples` or :func:`samples_from_arrays`.
    config : TrainConfig
        Settings; None for the defaults.
    init : ModelCheckpoint or path, optional
        Warm start (e.g. fine-tuning on corrections); it is copied, never modified.
    store : ModelStore, optional
        Write the result as its next version and activate it.
    out : path, optional
        Instead of ``store``: a ``.safetensors`` file that must not exist yet,
        or a model-store folder.  With neither, the default store
        of this SAM (:func:`napari_autosam.paths.model_store_dir`) is used.
    val_samples : list of Sample, optional
        Validation images; default: a seeded ``config.val_fraction`` split of
        three or more images, held-out strips (``config.val_strip``) of fewer.
    cache : EmbeddingCache, optional
        For the same SAM; with a disk directory, later runs skip encoding.
    cancel : CancelToken, optional
        Checked between steps; the best model so far is saved and returned.
    distributed : napari_autosam.distributed.sharded.ShardedRun, optional
        This process's share of a multi-process run (``torchrun``): it
        encodes and trains on its shard of every global batch, only the main
        process validates and writes the model.  None: one process does all.

    Yields ``Progress`` with phase ``"encode"``, ``"train_g"``, ``"train_h"``
    and metrics ``epoch``, ``loss``, ``val_dice_autosam``, ``val_dice_h`` and
    (at validations) ``val_kind``: ``"held-out strip"``, ``"held-out images"``,
    ``"given"`` or ``"training image"``.
    """
    from ..sam.cache import EmbeddingCache, sam_fingerprint

    config = config or TrainConfig()
    if config.depth_adapters:  # stacks through the depth-adapted encoder: its own step loop (no cache)
        from .depth import train_depth

        if config.classes:
            raise ValueError("depth-adapter training makes a binary model; leave out the classes")
        if distributed is not None and distributed.world_size > 1:
            raise ValueError("depth-adapter training runs in one process; start it without torchrun "
                             f"(this run has {distributed.world_size} processes)")

        return (yield from train_depth(sam, samples, config=config, init=init, store=store, out=out,
                                       val_samples=val_samples, cancel=cancel))
    device = pick_device(config.device) if config.device else next(sam.parameters()).device
    sam = sam.to(device)
    samples = check_samples(samples)
    if cache is None:
        cache = EmbeddingCache(sam, max_items=1)  # this run keeps its own references
    elif cache.fingerprint != sam_fingerprint(sam):
        raise ValueError("the embedding cache belongs to a different SAM")
    start = initial_model(config, init=init, device=device)
    _check_variant(start, sam)
    classes = classwise.run_classes(config, start)
    if classes is not None:
        classwise.check_class_samples(samples, classes)
        if val_samples is not None:
            classwise.check_class_samples(val_samples, classes)
    num_classes = len(classes) if classes is not None else None
    if classes is not None and distributed is not None and getattr(distributed, "world_size", 2) > 1:
        raise ValueError("class models train in one process for now; run train without torchrun (or with one process)")
    resolved = config.resolved(device)
    if init is not None:  # the warm start's architecture wins over the device defaults
        resolved = _with_architecture(resolved, start)
    train_set, val_set, val_note, val_kind = _split(samples, val_samples, resolved)
    train_set, val_set = window_samples(train_set, resolved.window), window_samples(val_set, resolved.window)
    own_train, own_val = (train_set, val_set) if distributed is None else distributed.shares(train_set, val_set, resolved)
    destination = Destination.open(store, out, sam=sam) if distributed is None or distributed.is_main else None
    try:
        model = classwise.attach(AutoSAM(sam, start.prompt_generator, start.surrogate), start.class_heads)
        clock = Stopwatch(len(own_train) * len(resolved.variants) + len(own_val))
        train_data = yield from prepare(own_train, resolved.variants, cache=cache, input_size=resolved.input_size,
                                        clock=clock, cancel=cancel, num_classes=num_classes)
        val_data = None
        if train_data is not None:
            val_data = yield from prepare(own_val, ("identity",), cache=cache, input_size=resolved.input_size,
                                          clock=clock, done=clock.total - len(own_val), cancel=cancel,
                                          num_classes=num_classes)
        if distributed is None:
            trainer = Trainer(model, resolved, device, cancel, val_kind, classes=classes)
        else:  # every process agrees on a cancel; train_data becomes the view of all shards
            train_data, val_data = distributed.joined(train_data, val_data)
            trainer = distributed.trainer(model, resolved, device, cancel, val_kind)
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
        cancelled = "cancelled" in ended.values()
        final = trainer.validate(val_data) if val_data is not None and trainer.history else {}
        run_info = {"final": final, "config": resolved, "train": train_set, "val": val_set, "val_note": val_note,
                    "val_kind": val_kind, "ended": ended, "best": best, "history": trainer.history,
                    "seconds": round(time.perf_counter() - trainer.started, 2),
                    "parent": start.metadata, "sam": sam, "cancelled": cancelled, "classes": classes,
                    "probability_gain": summary_gain(trainer.gains, probability_gain(start.metadata))}
        write = write_model if distributed is None else distributed.write_model
        checkpoint, path, version = write(destination, model, run_info)
        yield Progress("save", 1, 1, f"saved {path}")
        return TrainResult(checkpoint, path, version, trainer.history, cancelled)
    finally:
        if destination is not None:
            destination.release()


def _check_variant(start: ModelCheckpoint, sam) -> None:
    from ..sam.registry import check_sam_variant

    check_sam_variant(start.sam_variant, sam, "the initial model")


def _with_architecture(config: TrainConfig, start: ModelCheckpoint) -> TrainConfig:
    import dataclasses

    g = start.prompt_generator
    return dataclasses.replace(config, generator=g.config["name"], input_size=g.input_size,
                               g_input=g.input_transform.name)
