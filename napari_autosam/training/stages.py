"""The two training stages, sized in optimiser steps: g through the frozen SAM, then h on g's output.

A stage runs until its step budget is spent, its share of the time limit is
used, the validation Dice has stopped improving (``patience`` validations
without a gain, once the stage has beaten its starting model and passed
``min_steps``), or it is cancelled.  The time limit is honoured even before
``min_steps`` (a new g spends its first steps predicting background, so a
model cut off there may be poor): after :data:`ETA_AFTER_STEPS` steps a
stage that will not reach ``min_steps`` in time says so, with the pace and
the steps it will reach.  It always ends in its best validated
state (step 0 = the starting state).  Batches are drawn from a running
random permutation of the training images, so every image is seen once per
pass whatever the budget.
"""

from __future__ import annotations

import math
import time

import torch

from ..device import module_precision, needs_grad_scaler, training_autocast
from ..losses import bce_dice_loss, logit_gain
from ..models.autosam import AutoSAM
from ..progress import CancelToken, Stopwatch, Task
from . import class_stage
from .config import G_TIME_SHARE, TrainConfig
from .fast_step import g_prompt_and_logits
from .prepared import PreparedSet
from .scoring import Scores, predict_logits, score

#: Steps after which a stage says when the time limit will cut it short of ``min_steps`` (with the ETA).
ETA_AFTER_STEPS = 3


class Trainer:
    """State of one run: the model, the history, the best states and the clock."""

    def __init__(self, model: AutoSAM, config: TrainConfig, device, cancel: CancelToken | None,
                 val_kind: str = "held-out images", *, classes=None) -> None:
        self.model = model
        self.classes = classes  # a ClassSet: the model has class heads (training/class_stage.py)
        self.config = config
        self.device = device
        self.cancel = cancel
        self.val_kind = val_kind
        self.history: list[dict] = []
        self.generator = torch.Generator().manual_seed(config.seed)
        self.latest: dict = {}
        self.best_epoch = 0
        self.best_step = 0
        self.started = time.perf_counter()
        self.gains: list[float] = []  # the logit gain of each g step (see losses.probability_gain)
        # the steps' precision follows the SAM encoder's (--precision): bfloat16 on a CPU that has it natively
        self.step_precision = module_precision(model.sam) if torch.device(device).type == "cpu" else None

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.cancelled

    def validate(self, val: PreparedSet) -> dict:
        """Mean Dice/IoU of AutoSAM and h on the validation set (original frames, threshold 0.5)."""
        if self.classes is not None:  # mean over classes, and per class
            self.latest = class_stage.validate(self.model, val, self.classes, batch=self.config.batch_size,
                                             device=self.device)
            return self.latest
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

    # --- losses -------------------------------------------------------------------------------

    def _g_loss(self, g_input, embedding, target) -> torch.Tensor:
        if self.classes is not None:
            return class_stage.g_loss(self.model, g_input, embedding, target, joint=self.config.joint)
        with self._autocast():
            prompt, logits = g_prompt_and_logits(self.model, g_input, embedding,
                                                 prompt_generator=self._trained(self.model.prompt_generator))
            h_logits = self._trained(self.model.surrogate)(prompt.float()) if self.config.joint else None
        loss = bce_dice_loss(self._gain(logits) * logits.float(), target)
        return loss + bce_dice_loss(h_logits.float(), target) if h_logits is not None else loss

    def _autocast(self):
        return training_autocast(self.device, self.step_precision, enabled=self.config.mixed_precision)

    def _gain(self, logits: torch.Tensor) -> torch.Tensor | float:
        """The factor on the frozen decoder's logits in g's loss (masks are unchanged by it)."""
        fixed = self.config.logit_gain
        gain = logit_gain(logits) if fixed is None else float(fixed)
        self.gains.append(float(gain))
        return gain

    def _h_loss(self, g_input, _embedding, target) -> torch.Tensor:
        if self.classes is not None:
            return class_stage.h_loss(self.model, g_input, _embedding, target)
        with torch.no_grad(), self._autocast():
            prompt = self.model.prompt_generator(g_input)
        with self._autocast():
            logits = self._trained(self.model.surrogate)(prompt.float())
        return bce_dice_loss(logits.float(), target)

    # --- one stage -----------------------------------------------------------------------------

    def _deadline(self, stage: str, h_follows: bool) -> float | None:
        limit = self.config.time_limit
        if limit is None:
            return None
        share = G_TIME_SHARE if stage == "g" and h_follows else 1.0
        return self.started + limit * share

    def _modules(self, stage: str) -> list[torch.nn.Module]:
        heads = class_stage.heads_of(self.model)
        if stage == "h":
            return [self.model.surrogate] + (heads.h_modules() if heads is not None else [])
        extra = heads.g_modules() + (heads.h_modules() if self.config.joint else []) if heads is not None else []
        return [self.model.prompt_generator] + ([self.model.surrogate] if self.config.joint else []) + extra

    def stage(self, stage: str, train: PreparedSet, val: PreparedSet, *, h_follows: bool = False) -> Task[str]:
        """Train g (``stage="g"``) or h (``"h"``).

        Returns how it ended: ``completed`` (budget spent), ``early_stopping``,
        ``time_limit`` or ``cancelled``.
        """
        cfg, is_g = self.config, stage == "g"
        budget = cfg.stage_steps(stage, len(train))
        interval = cfg.validation_interval(stage, len(train))
        per_epoch = math.ceil(len(train) / (cfg.batch_size if is_g else cfg.h_batch_size))
        deadline = self._deadline(stage, h_follows)
        modules = self._modules(stage)
        key = "val_dice_autosam" if is_g else "val_dice_h"
        optimizer, scaler = self._optimizer(stage, modules)
        clock = Stopwatch(budget)
        best = self.validate(val)[key]
        best_state, self.best_step, self.best_epoch, stale = _snapshot(modules), 0, 0, 0
        self._record(stage, 0, 0, None)
        yield clock.event(f"train_{stage}", 0, f"{stage}: starting {key}={best:.3f} ({self.val_kind})",
                          epoch=0, **self._shown())
        ended, step, losses, started = "completed", 0, [], time.perf_counter()
        batches = self._batches(len(train), cfg.batch_size if is_g else cfg.h_batch_size)
        while step < budget:
            stop = self._stop(step, budget, deadline)
            if stop is not None:
                ended = stop
                break
            note = self._floor_note(stage, step, started, budget, deadline)
            if note:
                yield clock.event(f"train_{stage}", step, note, epoch=math.ceil(step / per_epoch), **self._shown())
            self._train_mode(stage)
            tensors = self._next_batch(train, batches, is_g)
            loss_fn = self._g_loss if is_g else self._h_loss
            losses.append(self._step(loss_fn(*tensors), optimizer, scaler))
            step += 1
            epoch = math.ceil(step / per_epoch)
            yield clock.event(f"train_{stage}", step, f"{stage} step {step}/{budget} loss {losses[-1]:.4f}",
                              epoch=epoch, loss=losses[-1], **_dice_only(self.latest))
            if step % interval and step < budget and not self.cancelled:
                continue
            result = self.validate(val)
            self._record(stage, step, epoch, sum(losses) / len(losses))
            losses = []
            if result[key] > best:
                best, best_state, self.best_step, self.best_epoch, stale = (
                    result[key], _snapshot(modules), step, epoch, 0)
            elif self.best_step > 0:  # a new model often gets worse before it learns: wait for a first gain
                stale += 1
            yield clock.event(f"train_{stage}", step, f"{stage} step {step}: {key}={result[key]:.3f} "
                              f"(best {best:.3f}, {self.val_kind})", epoch=epoch, loss=self.history[-1]["loss"],
                              **self._shown())
            if cfg.patience is not None and stale >= cfg.patience and step >= cfg.min_steps:
                ended = "early_stopping"
                break
        self._restore(modules, best_state)
        return ended

    def _floor_note(self, stage: str, step: int, started: float, budget: int, deadline) -> str | None:
        """After the first steps: the note that the time limit will stop this stage before its step floor."""
        if step != ETA_AFTER_STEPS or deadline is None:
            return None
        return floor_note(stage, step, time.perf_counter() - started, min(self.config.min_steps, budget),
                          deadline - time.perf_counter())

    def _restore(self, modules: list[torch.nn.Module], best_state: list[dict]) -> None:
        """End a stage in its best validated state, in eval mode, g trainable again."""
        for module, state in zip(modules, best_state):
            module.load_state_dict(state)
        self.model.eval()
        for p in self.model.prompt_generator.parameters():
            p.requires_grad_(True)

    def _optimizer(self, stage: str, modules):
        """The stage's Adam over ``modules`` (g's parameters trainable only in stage g) and a grad scaler or None."""
        cfg, is_g = self.config, stage == "g"
        for p in self.model.prompt_generator.parameters():
            p.requires_grad_(is_g)
        params = [p for m in modules for p in m.parameters()]
        optimizer = torch.optim.Adam(params, lr=cfg.lr if is_g else cfg.h_lr, weight_decay=cfg.weight_decay)
        scaler = torch.amp.GradScaler("cuda") if cfg.mixed_precision and needs_grad_scaler(self.device) else None
        return optimizer, scaler

    def _stop(self, step: int, budget: int, deadline) -> str | None:
        """Why the stage stops before this step ("cancelled", "time_limit"), or None to go on."""
        if self.cancelled:
            return "cancelled"
        if deadline is not None and self._past(deadline):  # honoured before min_steps too (floor_note says so)
            return "time_limit"
        return None

    def _batches(self, n: int, batch: int):
        """Endless index batches from running random permutations (each image once per pass)."""
        return index_batches(n, batch, self.generator)

    # --- seams for multi-process training (napari_autosam.distributed.sharded overrides them) ----------

    def _next_batch(self, train: PreparedSet, batches, is_g: bool) -> tuple:
        """The next batch ``(g_input, embedding or None, target)`` from the index stream ``batches``."""
        return draw_batch(train, next(batches), self.generator, self.config.augment, self.device, is_g)

    def _trained(self, module: torch.nn.Module) -> torch.nn.Module:
        """What the loss calls to run ``module`` while it trains (the module itself in one process)."""
        return module

    def _past(self, deadline: float) -> bool:
        """True once the stage's time limit is reached."""
        return time.perf_counter() >= deadline

    def _step(self, loss: torch.Tensor, optimizer, scaler) -> float:
        """One optimiser step on ``loss``; returns the loss value."""
        return _optimise(loss, optimizer, scaler)

    def _train_mode(self, stage: str) -> None:
        if stage == "g":
            self.model.train()  # SAM stays in eval mode (AutoSAM.train)
        else:
            self.model.surrogate.train()  # g stays in eval mode: its BatchNorm statistics are frozen too

    def _record(self, stage: str, step: int, epoch: int, loss: float | None) -> None:
        seconds = time.perf_counter() - self.started
        self.history.append({"stage": stage, "step": step, "epoch": epoch, "loss": loss,
                             "seconds": round(seconds, 2), "val_kind": self.val_kind, **self.latest})

    def _shown(self) -> dict:
        return {**_dice_only(self.latest), "val_kind": self.val_kind}


def floor_note(stage: str, step: int, seconds: float, floor: int, left: float) -> str | None:
    """A message when the time left will not reach the ``floor`` of steps at the pace of the first ``step``; else None."""
    per_step = seconds / max(step, 1)
    needed = per_step * (floor - step)
    if floor <= step or needed <= left:
        return None
    return (f"{stage}: {per_step:.2f} s/step here, so the {floor}-step floor needs ~{needed:.0f} s more but the "
            f"time limit leaves {max(left, 0):.0f} s: this stage stops at the limit after about "
            f"{step + int(max(left, 0) / per_step)} steps (a longer --time-limit reaches the floor)")


def index_batches(n: int, batch: int, generator: torch.Generator):
    """Endless lists of ``batch`` indices below ``n`` from running random permutations (each index once per pass)."""
    pool: list[int] = []
    while True:
        while len(pool) < min(batch, n):
            pool += torch.randperm(n, generator=generator).tolist()
        yield pool[:batch]
        pool = pool[batch:]


def draw_batch(train: PreparedSet, idx: list[int], generator: torch.Generator, augment, device,
               with_embedding: bool) -> tuple:
    """Tensors of the images ``idx`` of ``train``, each under a random cached variant, augmented."""
    variants = torch.randint(len(train.variants), (len(idx),), generator=generator).tolist()
    return train.batch(idx, variants, device=device, augment=augment, generator=generator,
                       with_embedding=with_embedding)


def _dice_only(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k.startswith("val_dice")}


def _snapshot(modules: list[torch.nn.Module]) -> list[dict]:
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]


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
