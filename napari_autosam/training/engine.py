"""The training routine: one generator that encodes, trains g, then h, and saves a new model version.

Stage 1 trains the prompt generator g through the frozen SAM mask decoder
(BCE + Dice on the decoder's 256² logits); stage 2 trains the surrogate
decoder h on g's output with g frozen (METHOD.md §2).  Each stage keeps the
state with the best validation Dice in memory, stops early after
``patience`` epochs without improvement, and can be cancelled between any
two steps: the routine then returns the best model so far, saved like a
finished one.  SAM's image encoder only runs in the ``encode`` phase.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..device import autocast, needs_grad_scaler, pick_device
from ..losses import bce_dice_loss
from ..models.autosam import AutoSAM
from ..models.checkpoint import ModelCheckpoint, load_checkpoint
from ..models.prompt_generator import build_prompt_generator
from ..models.surrogate import SurrogateDecoder
from ..progress import CancelToken, Progress, Stopwatch, Task
from .config import TrainConfig
from .data import Sample, TrainingDataError, check_samples, split_samples
from .evaluate import Scores, predict_logits, score
from .output import Destination, write_model
from .prepared import PreparedSet, prepare


@dataclass
class TrainResult:
    """What a training run returns.

    model : the trained g and h (eval mode, on the training device) with the saved metadata
    path : the checkpoint file written
    version : its name in the model store (``"v0003"``), or None for a plain file
    history : one dict per validation (stage, epoch, loss, val_dice_autosam, val_dice_h, …)
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
                                       pretrained_backbone=config.pretrained_backbone)
            h = SurrogateDecoder()
        return ModelCheckpoint(g.to(device), h.to(device), {})
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
    return ModelCheckpoint(g, h, meta)


def _split(samples, val_samples, config: TrainConfig) -> tuple[list[Sample], list[Sample], str]:
    if val_samples is not None:
        if not list(val_samples):
            raise TrainingDataError("the validation set is empty (val_samples=[]); give validation samples, "
                                    "or None for a held-out split of the training images")
        return list(samples), check_samples(val_samples), "given"
    if len(samples) == 1:
        return list(samples), list(samples), "the training image (only one image was given)"
    train, val = split_samples(samples, config.val_fraction, seed=config.seed)
    return train, val, f"{len(val)} held-out images ({config.val_fraction:.0%} split, seed {config.seed})"


class _Trainer:
    """State of one run: the model, the prepared data, the history and the best states."""

    def __init__(self, model: AutoSAM, config: TrainConfig, device, cancel: CancelToken | None) -> None:
        self.model = model
        self.config = config
        self.device = device
        self.cancel = cancel
        self.history: list[dict] = []
        self.generator = torch.Generator().manual_seed(config.seed)
        self.latest: dict = {}

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.cancelled

    def validate(self, val: PreparedSet) -> dict:
        """Mean Dice/IoU of AutoSAM and h on the validation set (original frames, threshold 0.5)."""
        self.model.eval()
        autosam, h = Scores(), Scores()
        batch = self.config.batch_size
        for start in range(0, len(val), batch):
            idx = list(range(start, min(len(val), start + batch)))
            g_input, embedding, _ = val.batch(idx, [0] * len(idx), device=self.device)
            sam_logits, h_logits = predict_logits(self.model, g_input, embedding)
            for j, i in enumerate(idx):
                sample = val.samples[i]
                autosam.add(sample.name, *score(sam_logits[j], sample.mask))
                h.add(sample.name, *score(h_logits[j], sample.mask))
        self.latest = {"val_dice_autosam": autosam.mean_dice, "val_iou_autosam": autosam.mean_iou,
                       "val_dice_h": h.mean_dice, "val_iou_h": h.mean_iou}
        return self.latest

    def _g_loss(self, g_input, embedding, target) -> torch.Tensor:
        with autocast(self.device):
            prompt = self.model.prompt_generator(g_input)
            logits = self.model.decode(embedding, prompt.to(embedding.dtype))
        return bce_dice_loss(logits.float(), target)

    def _h_loss(self, g_input, _embedding, target) -> torch.Tensor:
        with torch.no_grad(), autocast(self.device):
            prompt = self.model.prompt_generator(g_input)
        with autocast(self.device):
            logits = self.model.surrogate(prompt.float())
        return bce_dice_loss(logits.float(), target)

    def _epoch(self, stage: str, train: PreparedSet, epoch: int, optimizer, scaler, clock: Stopwatch,
               step: int) -> Task[list[float]]:
        """One pass over the training images in random order; returns the step losses (fewer if cancelled)."""
        is_g = stage == "g"
        batch = self.config.batch_size if is_g else self.config.h_batch_size
        epochs = self.config.epochs if is_g else self.config.h_epochs
        loss_fn = self._g_loss if is_g else self._h_loss
        losses: list[float] = []
        order = torch.randperm(len(train), generator=self.generator).tolist()
        for start in range(0, len(order), batch):
            if self.cancelled:
                break
            idx = order[start : start + batch]
            variants = torch.randint(len(train.variants), (len(idx),), generator=self.generator).tolist()
            if is_g:
                self.model.train()  # SAM stays in eval mode (AutoSAM.train)
            else:
                self.model.surrogate.train()  # g stays in eval mode: its BatchNorm statistics are frozen too
            tensors = train.batch(idx, variants, device=self.device, augment=self.config.augment,
                                  generator=self.generator, with_embedding=is_g)
            losses.append(_optimise(loss_fn(*tensors), optimizer, scaler))
            yield clock.event(f"train_{stage}", step + len(losses),
                              f"{stage} epoch {epoch}/{epochs} loss {losses[-1]:.4f}",
                              epoch=epoch, loss=losses[-1], **_dice_only(self.latest))
        return losses

    def stage(self, stage: str, train: PreparedSet, val: PreparedSet) -> Task[str]:
        """Train g (``stage="g"``) or h (``"h"``); returns how it ended: completed, early_stopping, cancelled.

        The module ends in its best validated state (epoch 0 = the starting state).  Early
        stopping counts epochs without improvement from the first epoch that beat the start.
        """
        cfg = self.config
        is_g = stage == "g"
        module = self.model.prompt_generator if is_g else self.model.surrogate
        epochs = cfg.epochs if is_g else cfg.h_epochs
        key = "val_dice_autosam" if is_g else "val_dice_h"
        for p in self.model.prompt_generator.parameters():
            p.requires_grad_(is_g)
        optimizer = torch.optim.Adam(module.parameters(), lr=cfg.lr if is_g else cfg.h_lr, weight_decay=cfg.weight_decay)
        scaler = torch.amp.GradScaler("cuda") if cfg.mixed_precision and needs_grad_scaler(self.device) else None
        clock = Stopwatch(epochs * math.ceil(len(train) / (cfg.batch_size if is_g else cfg.h_batch_size)))
        best = self.validate(val)[key]
        best_state, self.best_epoch, stale, step = _snapshot(module), 0, 0, 0
        self.history.append({"stage": stage, "epoch": 0, "loss": None, **self.latest})
        yield clock.event(f"train_{stage}", 0, f"{stage}: starting {key}={best:.3f}", epoch=0, **self.latest)
        ended = "completed"
        for epoch in range(1, epochs + 1):
            losses = yield from self._epoch(stage, train, epoch, optimizer, scaler, clock, step)
            step += len(losses)
            if losses:  # a cancelled epoch's partial training may still be the best so far
                result = self.validate(val)
                loss = sum(losses) / len(losses)
                self.history.append({"stage": stage, "epoch": epoch, "loss": loss, **result})
                if result[key] > best:
                    best, best_state, self.best_epoch, stale = result[key], _snapshot(module), epoch, 0
                elif self.best_epoch > 0:  # a new model often gets worse before it learns: wait for a first gain
                    stale += 1
                yield clock.event(f"train_{stage}", step, f"{stage} epoch {epoch}: {key}={result[key]:.3f} "
                                  f"(best {best:.3f})", epoch=epoch, loss=loss, **_dice_only(result))
            if self.cancelled:
                ended = "cancelled"
                break
            if cfg.patience is not None and stale >= cfg.patience:
                ended = "early_stopping"
                break
        module.load_state_dict(best_state)
        self.model.eval()
        for p in self.model.prompt_generator.parameters():
            p.requires_grad_(True)
        return ended


def _dice_only(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k.startswith("val_dice")}


def _snapshot(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _optimise(loss: torch.Tensor, optimizer, scaler) -> float:
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return float(loss.detach())


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
        Validation images; default: a seeded ``config.val_fraction`` split.
    cache : EmbeddingCache, optional
        For the same SAM; with a disk directory, later runs skip encoding.
    cancel : CancelToken, optional
        Checked between steps; the best model so far is saved and returned.

    Yields ``Progress`` with phase ``"encode"``, ``"train_g"``, ``"train_h"``
    and metrics ``epoch``, ``loss``, ``val_dice_autosam``, ``val_dice_h``.
    """
    from ..sam.cache import EmbeddingCache, sam_fingerprint

    config = config or TrainConfig()
    device = pick_device(config.device) if config.device else next(sam.parameters()).device
    sam = sam.to(device)
    samples = check_samples(samples)
    train_set, val_set, val_note = _split(samples, val_samples, config)
    if cache is None:
        cache = EmbeddingCache(sam, max_items=1)  # this run keeps its own references
    elif cache.fingerprint != sam_fingerprint(sam):
        raise ValueError("the embedding cache belongs to a different SAM")
    start = initial_model(config, init=init, device=device)
    _check_variant(start, sam)
    resolved = config.resolved(device)
    if init is not None:  # the warm start's architecture wins over the device defaults
        resolved = _with_architecture(resolved, start)
    destination = Destination.open(store, out, sam=sam)
    try:
        model = AutoSAM(sam, start.prompt_generator, start.surrogate)
        trainer = _Trainer(model, resolved, device, cancel)
        clock = Stopwatch(len(train_set) * len(resolved.variants) + len(val_set))
        train_data = yield from prepare(train_set, resolved.variants, cache=cache, input_size=resolved.input_size,
                                        clock=clock, cancel=cancel)
        val_data = None
        if train_data is not None:
            val_data = yield from prepare(val_set, ("identity",), cache=cache, input_size=resolved.input_size,
                                          clock=clock, done=clock.total - len(val_set), cancel=cancel)
        ended = {"g": "cancelled", "h": "skipped"}
        best_epochs = {}
        if val_data is not None:
            ended["g"] = yield from trainer.stage("g", train_data, val_data)
            best_epochs["g"] = trainer.best_epoch
            if ended["g"] != "cancelled" and resolved.h_epochs > 0:
                ended["h"] = yield from trainer.stage("h", train_data, val_data)
                best_epochs["h"] = trainer.best_epoch
        cancelled = "cancelled" in ended.values()
        final = trainer.validate(val_data) if val_data is not None and trainer.history else {}
        run_info = {"final": final, "config": resolved, "train": train_set, "val": val_set, "val_note": val_note,
                    "ended": ended, "best_epochs": best_epochs, "history": trainer.history,
                    "parent": start.metadata, "sam": sam, "cancelled": cancelled}
        checkpoint, path, version = write_model(destination, model, run_info)
        yield Progress("save", 1, 1, f"saved {path}")
        return TrainResult(checkpoint, path, version, trainer.history, cancelled)
    finally:
        destination.release()


def _check_variant(start: ModelCheckpoint, sam) -> None:
    from ..sam.registry import check_sam_variant

    check_sam_variant(start.sam_variant, sam, "the initial model")


def _with_architecture(config: TrainConfig, start: ModelCheckpoint) -> TrainConfig:
    import dataclasses

    g = start.prompt_generator
    return dataclasses.replace(config, generator=g.config["name"], input_size=g.input_size)
