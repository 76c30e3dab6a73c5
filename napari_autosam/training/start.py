"""Where a training run starts and what it returns: the starting model (new or a warm start's copy) and
:class:`TrainResult`; every kind of training (:mod:`.train_kinds`) uses these.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.checkpoint import ModelCheckpoint, load_checkpoint
from ..models.prompt_generator import build_prompt_generator
from ..models.surrogate import SurrogateDecoder
from . import class_stage
from .config import TrainConfig


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
                                       pretrained_backbone=config.pretrained_backbone, imagenet=True)
            h = SurrogateDecoder()
        return ModelCheckpoint(g.to(device), h.to(device), {},
                               class_heads=class_stage.starting_heads(config, None, device))
    parent = load_checkpoint(init, device=device) if not isinstance(init, ModelCheckpoint) else init
    g = copy.deepcopy(parent.prompt_generator).to(device)  # never train the caller's live model
    if config.generator not in (None, g.config["name"]) or config.input_size not in (None, g.input_size):
        raise ValueError(
            f"the initial model is {g.config['name']} at input size {g.input_size}; "
            f"it cannot be fine-tuned as {config.generator} at {config.input_size} (leave those settings unset)"
        )
    if parent.surrogate is not None:
        h = copy.deepcopy(parent.surrogate).to(device)
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            h = SurrogateDecoder().to(device)
    meta = dict(parent.metadata)
    if not isinstance(init, ModelCheckpoint):
        meta["path"] = str(init)
    return ModelCheckpoint(g, h, meta, class_heads=class_stage.starting_heads(config, parent, device))


def check_start_variant(start: ModelCheckpoint, sam) -> None:
    from ..sam.registry import check_sam_variant

    check_sam_variant(start.sam_variant, sam, "the initial model")


def with_architecture(config: TrainConfig, start: ModelCheckpoint) -> TrainConfig:
    g = start.prompt_generator
    return dataclasses.replace(config, generator=g.config["name"], input_size=g.input_size)
