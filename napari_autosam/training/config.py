"""Settings of a training run, with defaults that depend on the device."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from .augment import D4, Augmentation

#: Geometric variants encoded per training image by default (see :mod:`.augment`).
CPU_VARIANTS = ("identity", "hflip")
GPU_VARIANTS = tuple(D4)


@dataclass(frozen=True)
class TrainConfig:
    """How to train g (stage 1, through the frozen SAM) and h (stage 2, on g's output).

    ``None`` means "pick for the device": on a CPU a small g
    (``hardnet_small`` at 256 px, batch 4, two cached geometric variants)
    so that a step takes seconds; on CUDA/MPS the paper's HarDNet-85 at
    512 px, batch 10, all eight D4 variants.  An explicit value always wins.

    Attributes
    ----------
    generator : str or None
        Prompt-generator name (``"hardnet85"``, ``"hardnet_small"``).
    input_size : int or None
        Side of g's square input (a multiple of 16).
    epochs, h_epochs : int
        Maximum epochs of each stage (``h_epochs`` None: same as ``epochs``;
        0 skips stage 2).  One epoch visits every training image once.
    batch_size, h_batch_size : int or None
        Images per step (h: None gives twice ``batch_size``).
    lr, weight_decay, h_lr : float
        Adam settings (paper: 3e-4, 1e-5).
    patience : int or None
        Stop a stage after this many epochs without a better validation
        Dice, counted once the stage has beaten its starting model (a new g
        typically predicts background for a few epochs before it learns);
        None trains every epoch.
    val_fraction : float
        Share of images held out for validation when none are given.
    seed : int
        Seeds the split, the initial weights and the augmentations.
    device : str or None
        ``"cuda"``, ``"mps"``, ``"cpu"``; None uses the SAM's device.
    mixed_precision : bool
        Autocast on CUDA (bfloat16, or float16 with loss scaling).
    variants : tuple of str or None
        Geometric variants (:data:`~napari_autosam.training.augment.D4` names)
        whose SAM embeddings are cached; ``"identity"`` is always included.
    augment : Augmentation
        Photometric jitter and small affine, applied every step.
    pretrained_backbone : str or None
        ImageNet weights file for g's encoder (new models only).
    resolution : dict or None
        The working resolution the images were read at
        (:meth:`napari_autosam.io.working.Resolution.to_dict`, e.g.
        ``{"level": 0, "downsample": 2.0, "mpp": 0.5}``); written into the
        model's metadata under ``"resolution"`` so segmenting with the model
        defaults to it.
    """

    generator: str | None = None
    input_size: int | None = None
    epochs: int = 50
    h_epochs: int | None = None
    batch_size: int | None = None
    h_batch_size: int | None = None
    lr: float = 3e-4
    weight_decay: float = 1e-5
    h_lr: float = 3e-4
    patience: int | None = 10
    val_fraction: float = 0.2
    seed: int = 0
    device: str | None = None
    mixed_precision: bool = True
    variants: tuple[str, ...] | None = None
    augment: Augmentation = field(default_factory=Augmentation)
    pretrained_backbone: str | None = None
    resolution: dict | None = None

    def resolved(self, device: torch.device | str) -> TrainConfig:
        """A copy with every ``None`` default filled in for ``device``."""
        cpu = torch.device(device).type == "cpu"
        batch = self.batch_size or (4 if cpu else 10)
        variants = self.variants or (CPU_VARIANTS if cpu else GPU_VARIANTS)
        variants = ("identity",) + tuple(v for v in dict.fromkeys(variants) if v != "identity")
        unknown = [v for v in variants if v not in D4]
        if unknown:
            raise ValueError(f"unknown geometric variants {unknown}; valid: {', '.join(D4)}")
        if self.epochs < 0 or (self.h_epochs is not None and self.h_epochs < 0):
            raise ValueError("epochs must not be negative")
        if batch < 1 or (self.h_batch_size is not None and self.h_batch_size < 1):
            raise ValueError("batch sizes must be at least 1")
        return dataclasses.replace(
            self,
            generator=self.generator or ("hardnet_small" if cpu else "hardnet85"),
            input_size=self.input_size or (256 if cpu else 512),
            h_epochs=self.epochs if self.h_epochs is None else self.h_epochs,
            batch_size=batch,
            h_batch_size=self.h_batch_size or 2 * batch,
            device=str(device),
            variants=variants,
        )

    def to_dict(self) -> dict:
        """JSON-compatible settings (stored in the checkpoint's metadata)."""
        data = dataclasses.asdict(self)
        data["augment"] = self.augment.to_dict()
        data["variants"] = list(self.variants) if self.variants else None
        return data
