"""Dice and IoU of AutoSAM (g + frozen SAM) and of the surrogate h, per image and on average.

Scores are computed the way the paper reports them: each prediction is
mapped back to the image's own ``H×W`` frame, thresholded at probability
0.5, compared with the mask, and the per-image values are averaged.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..device import autocast, pick_device
from ..losses import dice_iou
from ..models.autosam import AutoSAM
from ..models.checkpoint import ModelCheckpoint, load_checkpoint
from ..models.logits import to_probabilities
from ..progress import Cancelled, CancelToken, Stopwatch, Task, nested
from ..sam.embedding import Geometry, prepare_image
from .data import Sample


@torch.no_grad()
def predict_logits(
    model: AutoSAM, g_input: torch.Tensor, embedding: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(sam_logits, h_logits or None)``, each ``B×1×256×256`` float32, in SAM's padded frame."""
    device = g_input.device
    with autocast(device):
        out = model(g_input, embedding.to(device), with_surrogate=model.surrogate is not None)
    h_logits = out.h_logits.float() if out.h_logits is not None else None
    return out.sam_logits.float(), h_logits


def score(logits: torch.Tensor, mask: np.ndarray) -> tuple[float, float]:
    """Dice and IoU of one ``1×256×256`` (padded-frame) logit map against an ``H×W`` mask."""
    prob = to_probabilities(logits[None], Geometry(*mask.shape[:2]))[0, 0]
    return dice_iou((prob > 0.5).cpu().numpy(), mask)


@dataclass
class Scores:
    """Per-image Dice/IoU of one predictor (AutoSAM or h) and their means."""

    names: list[str] = field(default_factory=list)
    dice: list[float] = field(default_factory=list)
    iou: list[float] = field(default_factory=list)

    def add(self, name: str, dice: float, iou: float) -> None:
        self.names.append(name)
        self.dice.append(dice)
        self.iou.append(iou)

    @property
    def mean_dice(self) -> float:
        return float(np.mean(self.dice)) if self.dice else float("nan")

    @property
    def mean_iou(self) -> float:
        return float(np.mean(self.iou)) if self.iou else float("nan")

    def to_dict(self) -> dict:
        rows = [{"name": n, "dice": d, "iou": i} for n, d, i in zip(self.names, self.dice, self.iou)]
        return {"dice": self.mean_dice, "iou": self.mean_iou, "per_image": rows}


@dataclass
class Evaluation:
    """Scores of AutoSAM and of h (None when the model has no h) on a set of images."""

    autosam: Scores
    h: Scores | None

    def to_dict(self) -> dict:
        """``{"autosam": {"dice", "iou", "per_image"}, "h": {...} or None}``."""
        return {"autosam": self.autosam.to_dict(), "h": self.h.to_dict() if self.h is not None else None}


def _as_model(sam, model: ModelCheckpoint | str | os.PathLike, device: torch.device) -> AutoSAM:
    if not isinstance(model, ModelCheckpoint):
        model = load_checkpoint(model, device=device)
    from ..sam.registry import check_sam_variant

    check_sam_variant(model.sam_variant, sam)
    surrogate = model.surrogate.to(device) if model.surrogate is not None else None
    return AutoSAM(sam, model.prompt_generator.to(device), surrogate).eval()


def evaluate_binary(
    sam,
    model: ModelCheckpoint | str | os.PathLike,
    samples: Sequence[Sample],
    *,
    cache=None,
    cancel: CancelToken | None = None,
) -> Task[Evaluation]:
    """Score a binary model on ``samples`` (the binary kind's evaluation, :mod:`.train_kinds`); a generator of
    ``evaluate`` progress.

    ``cache`` (an :class:`~napari_autosam.sam.cache.EmbeddingCache` for the
    same SAM) avoids re-encoding images seen before.  Raises
    :class:`~napari_autosam.progress.Cancelled` when cancelled.
    """

    device = pick_device(next(sam.parameters()).device)
    if not isinstance(model, ModelCheckpoint):
        model = load_checkpoint(model, device=device)
    autosam = _as_model(sam, model, device)
    sam_scores = Scores()
    h_scores = Scores() if autosam.surrogate is not None else None

    def score_one(sample, g_input, embedding) -> dict:
        sam_logits, h_logits = predict_logits(autosam, g_input, embedding)
        sam_scores.add(sample.name, *score(sam_logits[0], sample.mask))
        metrics = {"dice_autosam": sam_scores.mean_dice}
        if h_scores is not None:
            h_scores.add(sample.name, *score(h_logits[0], sample.mask))
            metrics["dice_h"] = h_scores.mean_dice
        return metrics

    yield from score_each(sam, samples, autosam.input_size, device, score_one, cache=cache, cancel=cancel)
    return Evaluation(sam_scores, h_scores)


def score_each(sam, samples: Sequence[Sample], input_size: int, device, score_one, *, cache=None,
               cancel: CancelToken | None = None) -> Task[None]:
    """The evaluation loop of every model kind: per sample, its cached SAM embedding and g's input.

    ``score_one(sample, g_input, embedding)`` scores one sample and returns the
    running metrics that its ``evaluate`` progress event carries.  Raises
    :class:`~napari_autosam.progress.Cancelled` when cancelled.
    """
    from ..sam.cache import EmbeddingCache

    cache = cache if cache is not None else EmbeddingCache(sam, max_items=1)
    clock = Stopwatch(len(samples))
    for done, sample in enumerate(samples, start=1):
        if cancel is not None and cancel.cancelled:
            raise Cancelled("evaluation cancelled")
        embedding = yield from nested(cache.embed_many([sample.image]))
        g_input = prepare_image(sample.image, input_size)[0].to(device)
        metrics = score_one(sample, g_input, embedding)
        yield clock.event("evaluate", done, f"evaluated {done}/{len(samples)} images", **metrics)
