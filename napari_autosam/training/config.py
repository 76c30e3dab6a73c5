"""Settings of a training run, with defaults that depend on the device."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..models.stain import INPUT_TRANSFORMS
from .augment import D4, Augmentation
from .presets import get_preset

#: Geometric variants encoded per training image by default (see :mod:`.augment`).
CPU_VARIANTS = ("identity", "hflip")
GPU_VARIANTS = tuple(D4)
#: g's input transform for new models (napari_autosam.models.stain; measured in docs/training.md).
DEFAULT_G_INPUT = "rgb"
#: Optimiser steps of g and of h when neither steps nor epochs are given.
DEFAULT_STEPS = 300
DEFAULT_H_STEPS = 200
#: Share of ``time_limit`` that g may use when h is trained after it.
G_TIME_SHARE = 0.7
#: Most validations per stage when the interval is automatic.
VALIDATIONS_PER_STAGE = 30


@dataclass(frozen=True)
class TrainConfig:
    """How to train g (stage 1, through the frozen SAM) and h (stage 2, on g's output).

    ``None`` means "pick for the device or the data": on a CPU a small g
    (``hardnet_small`` at 256 px, batch 4, two cached geometric variants);
    on CUDA/MPS the paper's HarDNet-85 at 512 px, batch 10, all eight D4
    variants.  An explicit value always wins.

    Training is sized in optimiser steps, not epochs: with two small
    corrections an epoch is one step, so 50 epochs would be 50 steps.

    Attributes
    ----------
    generator : str or None
        Prompt-generator name (``"hardnet85"``, ``"hardnet_small"``, ``"resnet18"``).
    input_size : int or None
        Side of g's square input (a multiple of 16).
    steps, h_steps : int or None
        Step budget of each stage (0 skips it).  None: from ``epochs`` /
        ``h_epochs`` when those are given, else :data:`DEFAULT_STEPS` /
        :data:`DEFAULT_H_STEPS`.
    epochs, h_epochs : int or None
        Alternative budget in passes over the training images, raised to at
        least ``min_steps`` steps (``h_epochs`` None: like ``epochs``; 0 skips).
    min_steps : int
        Floor of steps: an epoch budget never gives fewer, and neither early
        stopping nor the time limit ends a stage before it.
    time_limit : float or None
        Seconds of training (both stages, encoding excluded); g may use
        :data:`G_TIME_SHARE` of it when h follows.  None: no limit.
    batch_size, h_batch_size : int or None
        Images per step (h: None gives twice ``batch_size``).
    lr, weight_decay, h_lr : float
        Adam settings (paper: 3e-4, 1e-5).
    patience : int or None
        Stop a stage after this many validations without a better Dice,
        counted once the stage has beaten its starting model and passed
        ``min_steps``; None trains the whole budget.
    val_every : int or None
        Steps between validations; None: one epoch, but at most
        :data:`VALIDATIONS_PER_STAGE` validations per stage.
    val_fraction : float
        Share of images held out for validation when none are given (three
        or more training images).
    val_strip : float
        With fewer than three images, this share of each image (a strip
        along one side) is held out for validation and cut from training.
    seed : int
        Seeds the split, the initial weights and the augmentations.
    device : str or None
        ``"cuda"``, ``"mps"``, ``"cpu"``; None uses the SAM's device.
    mixed_precision : bool
        Autocast in g's and h's steps: on CUDA bfloat16 (or float16 with loss
        scaling); on a CPU with native bfloat16 (AVX-512 BF16 / AMX) bfloat16
        when the SAM's precision (``--precision``, default ``auto``) is
        bfloat16; float32 elsewhere.
    preset : str or None
        Augmentation preset (:func:`~napari_autosam.training.presets.preset_names`);
        None: ``"default"``.  It supplies ``augment`` and ``variants`` when those are None.
    variants : tuple of str or None
        Geometric variants (:data:`~napari_autosam.training.augment.D4` names)
        whose SAM embeddings are cached; ``"identity"`` is always included.
    augment : Augmentation or None
        Photometric jitter (g only) and the optional affine warp, every step.
    g_input : str or None
        g's input transform for new models
        (:data:`~napari_autosam.models.stain.INPUT_TRANSFORMS`); None:
        :data:`DEFAULT_G_INPUT`.  A warm start keeps its model's.
    pretrained_backbone : str or None
        Weights file for g's encoder (new models only); variants with
        ImageNet weights in torchvision's registry download them when None.
    logit_gain : float or None
        Factor on the frozen decoder's logits in g's loss; None: automatic
        (:func:`~napari_autosam.losses.logit_gain`: 1 for logits already
        large, up to 16 for a decoder whose logits stay near zero); 1: the
        paper's loss.  Masks (logit > 0) do not depend on it.
    joint : bool
        Train h together with g in stage 1 (loss AutoSAM + h) instead of
        after it with g frozen (the paper); stage 2 is then skipped unless
        ``h_steps``/``h_epochs`` ask for it.
    resolution : dict or None
        The working resolution the images were read at
        (:meth:`napari_autosam.io.working.Resolution.to_dict`, e.g.
        ``{"mpp": 0.5}`` or ``{"level": 1, "downsample": 4.0}``); written into
        the model's metadata under ``"resolution"`` so segmenting with the
        model defaults to it.
    window : int or None
        Samples larger than this on a side are cut into ``window²`` windows
        (at their own resolution, never resized into SAM's frame); None: the
        segmentation tile size, 0: never cut.
    depth_adapters : bool
        Train depth adapters inside SAM's image encoder on stacks, with g and
        h (:mod:`.depth_stage`): each step encodes a window of ``depth_window``
        neighbouring slices, so nothing is cached (docs/depth.md).
    depth_window : int or None
        Slices per window of the depth adapters (None: 5, or the warm start's).
    depth_kind : str or None
        ``"depth_mlp"`` (default) or ``"dconv"`` (:data:`~napari_autosam.sam.adapters.ADAPTER_KINDS`).
    classes : tuple of dict or None
        A class model's classes, ``({"id": 1, "name": ..., "color": "#rrggbb"}, ...)``
        (:meth:`napari_autosam.class_sets.ClassSet.to_metadata`); masks then hold
        class ids.  None: the binary model (or a warm start's own classes).
    """

    generator: str | None = None
    input_size: int | None = None
    steps: int | None = None
    h_steps: int | None = None
    epochs: int | None = None
    h_epochs: int | None = None
    min_steps: int = 100
    time_limit: float | None = None
    batch_size: int | None = None
    h_batch_size: int | None = None
    lr: float = 3e-4
    weight_decay: float = 1e-5
    h_lr: float = 3e-4
    patience: int | None = 10
    val_every: int | None = None
    val_fraction: float = 0.2
    val_strip: float = 0.25
    seed: int = 0
    device: str | None = None
    mixed_precision: bool = True
    preset: str | None = None
    variants: tuple[str, ...] | None = None
    augment: Augmentation | None = None
    g_input: str | None = None
    pretrained_backbone: str | None = None
    joint: bool = False
    logit_gain: float | None = None
    resolution: dict | None = None
    window: int | None = None
    depth_adapters: bool = False
    depth_window: int | None = None
    depth_kind: str | None = None
    classes: tuple[dict, ...] | None = None

    def resolved(self, device: torch.device | str) -> TrainConfig:
        """A copy with every ``None`` default that does not depend on the data filled in for ``device``."""
        cpu = torch.device(device).type == "cpu"
        preset = get_preset(self.preset)
        batch = self.batch_size or (4 if cpu else 10)
        variants = self.variants or preset.variants or (CPU_VARIANTS if cpu else GPU_VARIANTS)
        variants = ("identity",) + tuple(v for v in dict.fromkeys(variants) if v != "identity")
        unknown = [v for v in variants if v not in D4]
        if unknown:
            raise ValueError(f"unknown geometric variants {unknown}; valid: {', '.join(D4)}")
        for name in ("steps", "h_steps", "epochs", "h_epochs", "min_steps"):
            if (getattr(self, name) or 0) < 0:
                raise ValueError(f"{name} must not be negative")
        if batch < 1 or (self.h_batch_size is not None and self.h_batch_size < 1):
            raise ValueError("batch sizes must be at least 1")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"time_limit must be positive seconds, got {self.time_limit}")
        if self.g_input is not None and self.g_input not in INPUT_TRANSFORMS:
            raise ValueError(f"unknown g input {self.g_input!r}; valid: {', '.join(INPUT_TRANSFORMS)}")
        if self.logit_gain is not None and not self.logit_gain > 0:
            raise ValueError(f"logit_gain must be positive (or None for automatic), got {self.logit_gain}")
        if not 0.0 < self.val_strip < 1.0:
            raise ValueError(f"val_strip must be between 0 and 1 (exclusive), got {self.val_strip}")
        if self.resolution is not None and not isinstance(self.resolution, dict):
            raise ValueError(f"resolution must be a dict such as {{'mpp': 0.5}}, got {self.resolution!r}")
        return dataclasses.replace(
            self,
            generator=self.generator or ("hardnet_small" if cpu else "hardnet85"),
            input_size=self.input_size or (256 if cpu else 512),
            g_input=self.g_input or DEFAULT_G_INPUT,
            batch_size=batch,
            h_batch_size=self.h_batch_size or 2 * batch,
            device=str(device),
            preset=preset.name,
            variants=variants,
            augment=self.augment if self.augment is not None else preset.augment,
            window=self.window if self.window is not None else _tile_size(),
        )

    def stage_steps(self, stage: str, n_train: int) -> int:
        """Step budget of stage ``"g"`` or ``"h"`` for ``n_train`` training images (resolved config)."""
        is_g = stage == "g"
        steps = self.steps if is_g else self.h_steps
        epochs = self.epochs if is_g else (self.h_epochs if self.h_epochs is not None else
                                           (None if self.joint else self.epochs))
        if steps is not None:
            return steps
        if epochs is not None:
            per_epoch = math.ceil(n_train / (self.batch_size if is_g else self.h_batch_size))
            return max(self.min_steps, epochs * per_epoch) if epochs > 0 else 0
        if not is_g and self.joint:
            return 0
        return DEFAULT_STEPS if is_g else DEFAULT_H_STEPS

    def validation_interval(self, stage: str, n_train: int) -> int:
        """Steps between validations of a stage."""
        if self.val_every:
            return self.val_every
        per_epoch = math.ceil(n_train / (self.batch_size if stage == "g" else self.h_batch_size))
        return max(1, per_epoch, math.ceil(self.stage_steps(stage, n_train) / VALIDATIONS_PER_STAGE))

    def to_dict(self) -> dict:
        """JSON-compatible settings (stored in the checkpoint's metadata)."""
        data = dataclasses.asdict(self)
        data["augment"] = self.augment.to_dict() if self.augment is not None else None
        data["variants"] = list(self.variants) if self.variants else None
        return data


def budget_settings(steps: int, h_steps: int, time_limit: float | None, settings: dict) -> dict:
    """TrainConfig keyword arguments: a step budget and time limit, under ``settings`` (which win).

    An epoch budget in ``settings`` (``epochs`` / ``h_epochs``) replaces the
    step budget of the stage it sizes, so the two never meet.
    """
    budget = {"steps": steps, "h_steps": h_steps, "time_limit": time_limit}
    if "epochs" in settings:
        budget.pop("steps")
        budget.pop("h_steps")
    if "h_epochs" in settings:
        budget.pop("h_steps", None)
    return {**budget, **settings}


def _tile_size() -> int:
    """The segmentation tile size (one home: :mod:`napari_autosam.inference.tiling`)."""
    from ..inference.tiling import AUTO_TILE

    return int(AUTO_TILE)
