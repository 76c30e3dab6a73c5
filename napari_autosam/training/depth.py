"""Depth-adapter training: g, h and adapters in SAM's image encoder, on windows of neighbouring slices.

The cached mode (:mod:`.engine`) encodes every picture once and never runs
SAM's encoder in a step.  Here the encoder's output depends on adapters that
are being trained, so each step encodes one window of ``D`` neighbouring
slices through the adapted encoder (:func:`~napari_autosam.models.depth.depth_forward`)
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
import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..losses import bce_dice_loss
from ..models.autosam import AutoSAM
from ..models.checkpoint import ModelCheckpoint, load_checkpoint
from ..models.depth import depth_forward
from ..progress import CancelToken, Progress, Stopwatch, Task
from ..sam.adapters import DEFAULT_DEPTH_WINDOW, DEFAULT_KIND, build_adapters, check_adapters, depth_windows
from ..sam.embedding import LOGIT_SIZE, mask_to_padded_frame
from .config import TrainConfig
from .data import Sample, TrainingDataError
from .evaluate import Scores, score
from .holdout import VAL_KIND_GIVEN, VAL_KIND_IMAGES, VAL_KIND_SELF

#: Optimiser steps of depth-adapter training when the config gives none.
DEFAULT_DEPTH_STEPS = 100


@dataclass(eq=False)
class Volume:
    """One training stack.

    channels : ``Z×H×W×C`` uint8, each channel scaled to 0-255 (``C = 3``: RGB, SAM's own input)
    mask : ``Z×H×W`` bool foreground
    """

    name: str
    channels: np.ndarray
    mask: np.ndarray
    normalization: object = None

    @property
    def key(self) -> str:
        return hashlib.sha1(np.ascontiguousarray(self.channels).tobytes()).hexdigest()

    @property
    def in_channels(self) -> int:
        return int(self.channels.shape[-1])


def volumes_from_samples(samples: Sequence[Sample]) -> list[Volume]:
    """Slices of one stack (the samples sharing a ``source``, in order) put back together as volumes."""
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.source or sample.name, []).append(sample)
    volumes = []
    for source, group in groups.items():
        shapes = {s.image.shape for s in group}
        if len(shapes) != 1:
            raise TrainingDataError(f"{source}: its slices differ in shape ({sorted(shapes)}); "
                                    "depth adapters need one stack of equal slices")
        volumes.append(Volume(source, np.stack([s.image for s in group]), np.stack([s.mask for s in group]),
                              group[0].normalization))
    return volumes


def _channel_volume(image: np.ndarray, mask: np.ndarray, name: str, percentiles) -> Volume:
    """A ``Z×Y×X×C`` multichannel stack: every channel scaled on its own over the whole stack (as segmentation does)."""
    from ..inference.depth_segment import channel_normalizations, scale_channels
    from ..inference.inputs import image_layout

    norms = channel_normalizations(image, image_layout(image, channel_axis=3), percentiles)
    return Volume(name, np.stack([scale_channels(image[z], norms) for z in range(len(image))]), mask > 0)


def volumes_from_arrays(images: Sequence, masks: Sequence, names: Sequence[str] | None = None, *,
                        multichannel: bool = True, percentiles: tuple[float, float] = (0.5, 99.5)) -> list[Volume]:
    """Training volumes from ``Z×Y×X`` (gray), ``Z×Y×X×3`` (RGB) or ``Z×Y×X×C`` stacks and ``Z×Y×X`` masks.

    A 4D stack whose last axis is not 3 keeps all ``C`` channels (for a
    modality adapter) when ``multichannel``; otherwise it is shown as RGB
    the usual way (:func:`~napari_autosam.io.normalize.to_rgb_uint8`).
    """
    from .data import samples_from_pair

    images, masks = list(images), list(masks)
    names = list(names) if names is not None else [f"stack_{i:03d}" for i in range(len(images))]
    if not (len(images) == len(masks) == len(names)):
        raise TrainingDataError(f"{len(images)} stacks, {len(masks)} masks and {len(names)} names")
    volumes = []
    for image, mask, name in zip(images, masks, names):
        image, mask = np.asarray(image), np.asarray(mask)
        if mask.ndim != 3 or image.shape[:3] != mask.shape or image.ndim not in (3, 4):
            raise TrainingDataError(f"{name}: depth adapters need a Z×Y×X[×C] stack with a Z×Y×X mask; "
                                    f"got image {tuple(image.shape)} and mask {tuple(mask.shape)}")
        if image.ndim == 4 and image.shape[-1] != 3 and multichannel:
            volumes.append(_channel_volume(image, mask, name, percentiles))
        else:
            volumes += volumes_from_samples(samples_from_pair(image, mask, name, source=name,
                                                              channel_axis=-1 if image.ndim == 4 else None,
                                                              percentiles=percentiles))
    return volumes


def load_volumes(images_dir, masks_dir, *, multichannel: bool = True) -> list[Volume]:
    """Stacks of a folder and their masks, matched by file stem (:func:`~napari_autosam.io.images.pair_images_and_masks`)."""
    from ..io.images import pair_images_and_masks, read_image, read_mask

    pairs = pair_images_and_masks(images_dir, masks_dir)
    if not pairs:
        raise TrainingDataError(f"no image in {images_dir} has a mask in {masks_dir}")
    return volumes_from_arrays([read_image(i) for i, _ in pairs], [read_mask(m) for _, m in pairs],
                               [str(i) for i, _ in pairs], multichannel=multichannel)


def _as_volumes(data) -> list[Volume]:
    data = list(data)
    if data and all(isinstance(d, Volume) for d in data):
        return data
    return volumes_from_samples(data)


def check_volumes(volumes: Sequence[Volume], depth_window: int) -> None:
    """One clear line for a stack shorter than the window, mixed channel counts, or nothing to learn."""
    if not volumes:
        raise TrainingDataError("no training stacks were given")
    for volume in volumes:
        depth_windows(len(volume.channels), depth_window, what=volume.name)
    counts = {v.in_channels for v in volumes}
    if len(counts) > 1:
        raise TrainingDataError(f"the stacks have different channel counts {sorted(counts)}; "
                                "one model's modality adapter takes one count")
    if not any(v.mask.any() for v in volumes):
        raise TrainingDataError("every mask is empty, so there is nothing to learn")


def inter_slice_dice(masks) -> float:
    """Mean Dice between the masks of consecutive slices of a ``Z×H×W`` stack (1.0: nothing changes along depth).

    Compare a prediction's value with the ground truth's: a slice-wise model
    that flickers from slice to slice scores lower than the truth.
    """
    from ..losses import dice

    masks = np.asarray(masks) > 0
    if len(masks) < 2:
        return 1.0
    return float(np.mean([dice(masks[z], masks[z + 1]) for z in range(len(masks) - 1)]))


def window_tensors(volume: Volume, start: int, depth: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(channels D×C×H×W float 0-255, targets D×1×256×256 soft)`` of slices ``start..start+D-1``."""
    channels = torch.from_numpy(np.ascontiguousarray(volume.channels[start : start + depth])).permute(0, 3, 1, 2)
    targets = torch.stack([mask_to_padded_frame(m, LOGIT_SIZE) for m in volume.mask[start : start + depth]])
    return channels.float().to(device), targets.to(device)


@torch.no_grad()
def validate_volumes(model: AutoSAM, adapters, volumes: Sequence[Volume], device) -> dict:
    """Mean per-slice Dice/IoU of AutoSAM and h, windows laid out as in segmentation."""
    model.eval()
    adapters.eval()
    autosam, h = Scores(), Scores()
    for volume in volumes:
        depth = adapters.depth_window
        starts = depth_windows(len(volume.channels), depth, what=volume.name)
        done = set()
        for start in starts:
            channels, _ = window_tensors(volume, start, depth, device)
            out, _ = depth_forward(model, adapters, channels)
            for k in range(depth):
                z = start + k
                if z in done:
                    continue
                done.add(z)
                autosam.add(f"{volume.name}:z{z}", *score(out.sam_logits[k], volume.mask[z]))
                if out.h_logits is not None:
                    h.add(f"{volume.name}:z{z}", *score(out.h_logits[k], volume.mask[z]))
    return {"val_dice_autosam": autosam.mean_dice, "val_iou_autosam": autosam.mean_iou,
            "val_dice_h": h.mean_dice, "val_iou_h": h.mean_iou}


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
                cancel: CancelToken | None = None) -> Task:
    """Train adapters, g and h on stacks; the generator behind ``train(config=TrainConfig(depth_adapters=True))``.

    ``samples`` are stack slices (:func:`~.data.samples_from_arrays`; slices of
    one source form a volume) or :class:`Volume` objects.  Yields
    ``Progress(phase="train_g")`` with ``loss``/``val_dice_*``, then ``"save"``;
    returns a :class:`~.engine.TrainResult` whose model has ``adapters``.
    """
    from ..device import pick_device
    from .engine import TrainResult, initial_model
    from .output import Destination, write_model

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
        info = {"final": final, "config": resolved, "train": train_set, "val": val_set, "val_note": val_note,
                "val_kind": val_kind, "ended": {"g": ended, "h": "joint"}, "best": {"g": trainer.best},
                "history": trainer.history, "seconds": round(time.perf_counter() - trainer.started, 2),
                "parent": start.metadata, "sam": sam, "cancelled": ended == "cancelled"}
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
