"""Depth-adapter training: g, h and adapters in SAM's image encoder, on windows of neighbouring slices.

The cached mode (:mod:`.engine`) encodes every picture once and never runs
SAM's encoder in a step.  Here the encoder's output depends on adapters that
are being trained, so each step encodes one window of ``D`` neighbouring
slices through the adapted encoder (:func:`~napari_autosam.models.depth_forward.depth_forward`)
and back-propagates through SAM's frozen blocks into the adapters.  One Adam
optimiser trains the adapters (and the modality adapter of a multichannel
stack), g and h together: loss = BCE + Dice of SAM's logits + BCE + Dice of
h(g(I)) with g's prompt detached (h learns from g without pulling g).
SAM's own parameters never change.

Training windows are every run of ``D`` consecutive slices (stride 1);
validation segments whole volumes the way :class:`~napari_autosam.inference.Segmenter`
does (windows every ``D`` slices, :func:`~napari_autosam.sam.adapters.depth_windows`).
With two or more volumes the last one (or ``val_samples``) validates;
with one, the training volume itself does, and the metadata says so.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Sequence

import torch

from ..losses import bce_dice_loss
from ..models.autosam import AutoSAM
from ..models.checkpoint import ModelCheckpoint, load_checkpoint
from ..models.depth_forward import depth_forward
from ..progress import CancelToken, Progress, Stopwatch, Task
from ..sam.adapters import DEFAULT_DEPTH_WINDOW, DEFAULT_KIND, build_adapters, check_adapters, depth_windows
from .config import TrainConfig
from .data import TrainingDataError
from .holdout import VAL_KIND_GIVEN, VAL_KIND_IMAGES, VAL_KIND_SELF
from .scoring import Evaluation, Scores, score
from .volumes import (  # noqa: F401  (re-exported: the depth mode's data API)
    Volume,
    _as_volumes,
    check_volumes,
    inter_slice_dice,
    load_volumes,
    volumes_from_arrays,
    volumes_from_samples,
    window_tensors,
)

#: Optimiser steps of depth-adapter training when the config gives none.
DEFAULT_DEPTH_STEPS = 100


@torch.no_grad()
def score_volume(model: AutoSAM, adapters, volume: Volume, device, autosam: Scores, h: Scores | None) -> None:
    """Add the per-slice Dice/IoU of AutoSAM (and h) on ``volume`` to the scores, windows laid out as in segmentation."""
    model.eval()
    adapters.eval()
    depth = adapters.depth_window
    done: set[int] = set()
    for start in depth_windows(len(volume.channels), depth, what=volume.name):
        channels, _ = window_tensors(volume, start, depth, device)
        out, _ = depth_forward(model, adapters, channels, with_surrogate=h is not None)
        for k in range(depth):
            z = start + k
            if z in done:
                continue
            done.add(z)
            autosam.add(f"{volume.name}:z{z}", *score(out.sam_logits[k], volume.mask[z]))
            if h is not None and out.h_logits is not None:
                h.add(f"{volume.name}:z{z}", *score(out.h_logits[k], volume.mask[z]))


def validate_volumes(model: AutoSAM, adapters, volumes: Sequence[Volume], device) -> dict:
    """Mean per-slice Dice/IoU of AutoSAM and h over ``volumes``."""
    autosam, h = Scores(), Scores()
    for volume in volumes:
        score_volume(model, adapters, volume, device, autosam, h)
    return {"val_dice_autosam": autosam.mean_dice, "val_iou_autosam": autosam.mean_iou,
            "val_dice_h": h.mean_dice, "val_iou_h": h.mean_iou}


def evaluate_depth(sam, checkpoint: ModelCheckpoint, samples, *, cancel: CancelToken | None = None) -> Task:
    """What :func:`~.train_kinds.evaluate` does for a model with depth adapters: stacks scored per slice."""
    from ..device import pick_device
    from ..progress import Cancelled
    from ..sam.registry import check_sam_variant

    check_sam_variant(checkpoint.sam_variant, sam)
    check_adapters(checkpoint.adapters, sam)
    device = pick_device(next(sam.parameters()).device)
    surrogate = checkpoint.surrogate.to(device) if checkpoint.surrogate is not None else None
    model = AutoSAM(sam, checkpoint.prompt_generator.to(device), surrogate).eval()
    adapters = checkpoint.adapters.to(device)
    volumes = _as_volumes(samples)
    for volume in volumes:
        depth_windows(len(volume.channels), adapters.depth_window, what=volume.name)
    autosam, h = Scores(), Scores() if surrogate is not None else None
    clock = Stopwatch(len(volumes))
    for done, volume in enumerate(volumes, start=1):
        if cancel is not None and cancel.cancelled:
            raise Cancelled("evaluation cancelled")
        score_volume(model, adapters, volume, device, autosam, h)
        yield clock.event("evaluate", done, f"evaluated {done}/{len(volumes)} stacks", dice_autosam=autosam.mean_dice)
    return Evaluation(autosam, h)


def _start_adapters(sam, config: TrainConfig, start, in_channels: int):
    """The warm start's adapters (copied) or new ones of ``config``'s kind and window."""
    if start.adapters is not None:
        adapters = copy.deepcopy(start.adapters)
        check_adapters(adapters, sam, "the initial model")
        wanted = config.depth_window or adapters.depth_window
        if wanted != adapters.depth_window:
            raise ValueError(f"the initial model's depth window is {adapters.depth_window}, not {wanted}")
        return adapters.to(next(sam.parameters()).device)
    return build_adapters(sam, config.depth_kind or DEFAULT_KIND, config.depth_window or DEFAULT_DEPTH_WINDOW,
                          in_channels=in_channels, seed=config.seed)


def _split(volumes: list[Volume], val_volumes):
    if val_volumes is not None:
        return volumes, _as_volumes(val_volumes), "given", VAL_KIND_GIVEN
    if len(volumes) >= 2:
        return volumes[:-1], volumes[-1:], f"held-out stack {volumes[-1].name}", VAL_KIND_IMAGES
    return volumes, volumes, "the training stack (one stack: nothing held out)", VAL_KIND_SELF


def train_depth(sam, samples, *, config: TrainConfig, init=None, store=None, out=None, val_samples=None,
                cache=None, cancel: CancelToken | None = None, distributed=None) -> Task:
    """Train adapters, g and h on stacks; the generator behind ``train(config=TrainConfig(depth_adapters=True))``.

    ``samples`` are stack slices (:func:`~.data.samples_from_arrays`; slices of
    one source form a volume) or :class:`Volume` objects.  Yields
    ``Progress(phase="train_g")`` with ``loss``/``val_dice_*``, then ``"save"``;
    returns a :class:`~.start.TrainResult` whose model has ``adapters``.  ``cache`` is not used (embeddings
    depend on the neighbouring slices); ``distributed`` must be one process.
    """
    if config.classes:
        raise ValueError("depth-adapter training makes a binary model; leave out the classes")
    if distributed is not None and distributed.world_size > 1:
        raise ValueError("depth-adapter training runs in one process; start it without torchrun "
                         f"(this run has {distributed.world_size} processes)")
    from ..device import pick_device
    from .output import Destination, TrainingRun, write_model
    from .start import TrainResult, initial_model

    device = pick_device(config.device) if config.device else next(sam.parameters()).device
    sam = sam.to(device)
    volumes = _as_volumes(samples)
    if init is not None and not isinstance(init, ModelCheckpoint):
        path = init
        init = load_checkpoint(init, device=device)
        init.metadata = {**init.metadata, "path": str(path)}
    start = initial_model(config, init=init, device=device)
    start.adapters = init.adapters if init is not None else None
    adapters = _start_adapters(sam, config, start, volumes[0].in_channels if volumes else 3)
    depth = adapters.depth_window
    check_volumes(volumes, depth)
    train_set, val_set, val_note, val_kind = _split(volumes, val_samples)
    check_volumes(val_set, depth)
    if adapters.in_channels != volumes[0].in_channels:
        raise TrainingDataError(f"the stacks have {volumes[0].in_channels} channels but the initial model's "
                                f"modality adapter takes {adapters.in_channels}")
    resolved = dataclasses.replace(config.resolved(device), depth_window=depth, depth_kind=adapters.kind)
    if init is not None:
        g = start.prompt_generator
        resolved = dataclasses.replace(resolved, generator=g.config["name"], input_size=g.input_size)
    destination = Destination.open(store, out, sam=sam)
    try:
        model = AutoSAM(sam, start.prompt_generator, start.surrogate)
        model.adapters = adapters
        trainer = _DepthTrainer(model, adapters, resolved, device, cancel, val_kind)
        ended = yield from trainer.run(train_set, val_set)
        final = trainer.best_result
        info = TrainingRun(sam, resolved, train_set, val_set, val_note, val_kind, {"g": ended, "h": "joint"},
                           {"g": trainer.best}, trainer.history, final=final,
                           seconds=round(time.perf_counter() - trainer.started, 2), parent=start.metadata,
                           cancelled=ended == "cancelled")
        checkpoint, path, version = write_model(destination, model, info)
        checkpoint.adapters = adapters.eval()
        yield Progress("save", 1, 1, f"saved {path}")
        return TrainResult(checkpoint, path, version, trainer.history, ended == "cancelled")
    finally:
        destination.release()


def train_step(model: AutoSAM, adapters, volume: Volume, start: int, optimizer, device) -> float:
    """One optimiser step on the window of slices ``start..start+D-1``; returns the loss.

    Loss: BCE + Dice of SAM's logits (gradients reach g and, through SAM's
    frozen encoder blocks, the adapters) + BCE + Dice of h on g's detached prompt.
    """
    model.train()
    adapters.train()
    channels, targets = window_tensors(volume, start, adapters.depth_window, device)
    out, _ = depth_forward(model, adapters, channels, detach_prompt_for_h=True)
    loss = bce_dice_loss(out.sam_logits.float(), targets)
    if out.h_logits is not None:
        loss = loss + bce_dice_loss(out.h_logits.float(), targets)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def new_optimizer(model: AutoSAM, adapters, config: TrainConfig) -> torch.optim.Optimizer:
    """Adam over the adapters, g and h (SAM's parameters are not in it)."""
    params = [p for m in (adapters, model.prompt_generator, model.surrogate) if m is not None for p in m.parameters()]
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)


class _DepthTrainer:
    """The step loop: one window per step, best state by AutoSAM's validation Dice."""

    def __init__(self, model: AutoSAM, adapters, config: TrainConfig, device, cancel, val_kind: str) -> None:
        self.model, self.adapters, self.config, self.device = model, adapters, config, device
        self.cancel, self.val_kind = cancel, val_kind
        self.history: list[dict] = []
        self.best = (0, 0)
        self.best_result: dict = {}
        self.started = time.perf_counter()
        self.generator = torch.Generator().manual_seed(config.seed)

    def _modules(self):
        return [self.adapters, self.model.prompt_generator, self.model.surrogate]

    def _step(self, volume: Volume, start: int, optimizer) -> float:
        return train_step(self.model, self.adapters, volume, start, optimizer, self.device)

    def run(self, train: list[Volume], val: list[Volume]) -> Task[str]:
        cfg, depth = self.config, self.adapters.depth_window
        windows = [(v, s) for v in train for s in range(len(v.channels) - depth + 1)]
        budget = cfg.steps if cfg.steps is not None else DEFAULT_DEPTH_STEPS
        interval = cfg.val_every or max(1, math.ceil(budget / 10))
        optimizer = new_optimizer(self.model, self.adapters, cfg)
        clock = Stopwatch(budget)
        self.best_result = self._validate(val, 0, None)
        best = self.best_result["val_dice_autosam"]
        best_state = _snapshot(self._modules())
        yield clock.event("train_g", 0, f"depth adapters: starting val_dice_autosam={best:.3f}", epoch=0,
                          **self._shown())
        ended, step, losses = "completed", 0, []
        while step < budget:
            if self.cancel is not None and self.cancel.cancelled:
                ended = "cancelled"
                break
            if cfg.time_limit is not None and step >= min(cfg.min_steps, budget) and \
                    time.perf_counter() - self.started >= cfg.time_limit:
                ended = "time_limit"
                break
            volume, start = windows[int(torch.randint(len(windows), (1,), generator=self.generator))]
            losses.append(self._step(volume, start, optimizer))
            step += 1
            epoch = math.ceil(step / len(windows))
            yield clock.event("train_g", step, f"depth step {step}/{budget} loss {losses[-1]:.4f}", epoch=epoch,
                              loss=losses[-1], **_dice(self.history[-1]))
            if step % interval and step < budget:
                continue
            result = self._validate(val, step, sum(losses) / len(losses), epoch)
            losses = []
            if result["val_dice_autosam"] > best:
                best, best_state, self.best = result["val_dice_autosam"], _snapshot(self._modules()), (epoch, step)
                self.best_result = result
            yield clock.event("train_g", step, f"depth step {step}: val_dice_autosam={result['val_dice_autosam']:.3f} "
                              f"(best {best:.3f})", epoch=epoch, loss=self.history[-1]["loss"], **self._shown())
        for module, state in zip(self._modules(), best_state):
            if module is not None:
                module.load_state_dict(state)
        self.model.eval()
        return ended

    def _validate(self, val, step: int, loss, epoch: int = 0) -> dict:
        result = validate_volumes(self.model, self.adapters, val, self.device)
        self.history.append({"stage": "g", "step": step, "epoch": epoch, "loss": loss, "val_kind": self.val_kind,
                             "seconds": round(time.perf_counter() - self.started, 2), **result})
        return result

    def _shown(self) -> dict:
        return {**_dice(self.history[-1]), "val_kind": self.val_kind}


def _dice(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k.startswith("val_dice")}


def _snapshot(modules) -> list[dict | None]:
    return [None if m is None else {k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]
