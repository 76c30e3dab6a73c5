"""Training and scoring a class model: targets per class, the class losses of both stages, per-class Dice.

The training engine calls these when the model has class heads
(:mod:`napari_autosam.models.multiclass`); a binary model never reaches
them.  Targets are ``K×256×256`` soft class fractions in SAM's padded frame
(the binary target of today, once per class); scores are computed like the
binary ones: the fused label logits are mapped back to the image's own
frame, the class of each pixel is the argmax, and each class's Dice/IoU
comes from the one Dice (:func:`napari_autosam.losses.per_class_dice_iou`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..class_sets import ClassesError, ClassSet, class_ids, classes_from_metadata
from ..device import autocast
from ..losses import class_loss, per_class_dice_iou
from ..models.logits import to_probabilities
from ..models.multiclass import ClassHeads, class_forward
from ..sam.embedding import LOGIT_SIZE, Geometry, mask_to_padded_frame


def config_classes(config) -> ClassSet | None:
    """The classes of a :class:`~napari_autosam.training.TrainConfig` (None: the binary model)."""
    if not getattr(config, "classes", None):
        return None
    return classes_from_metadata({"classes": list(config.classes)}, "TrainConfig.classes")


def class_targets(mask: np.ndarray, num_classes: int) -> torch.Tensor:
    """``H×W`` class ids → ``K×256×256`` uint8 soft class fractions (255 = all of the pixel)."""
    planes = [mask_to_padded_frame(mask == k, LOGIT_SIZE) for k in range(1, num_classes + 1)]
    return (torch.cat(planes) * 255).round().to(torch.uint8)


def check_class_samples(samples: Sequence, classes: ClassSet) -> None:
    """Raise :class:`~napari_autosam.class_sets.ClassesError` for a sample whose mask holds ids above K."""
    for sample in samples:
        class_ids(sample.mask, classes, sample.source or sample.name)


def heads_of(model) -> ClassHeads | None:
    """The class heads attached to an AutoSAM (``model.class_heads``), or None."""
    return getattr(model, "class_heads", None)


def g_loss(model, g_input, embedding, target, *, joint: bool = False) -> torch.Tensor:
    """Stage 1: the class loss of SAM's K binary maps and the fused map (and h's with ``joint``)."""
    heads = heads_of(model)
    with autocast(g_input.device):
        out = class_forward(model, heads, g_input, embedding, with_surrogate=joint)
    loss = class_loss(out.sam_logits.float(), out.fused.float(), target)
    if joint:
        loss = loss + class_loss(out.h_logits.float(), out.h_fused.float(), target)
    return loss


def h_loss(model, g_input, _embedding, target) -> torch.Tensor:
    """Stage 2: the class loss of h's K binary maps and its fused map, with g and the prompt head frozen."""
    heads = heads_of(model)
    with torch.no_grad(), autocast(g_input.device):
        prompts = heads.prompt(model.prompt_generator(g_input))
    from ..models.multiclass import surrogate_classes

    with autocast(g_input.device):
        logits, fused = surrogate_classes(model, heads, prompts)
    return class_loss(logits.float(), fused.float(), target)


def labels_of(fused: torch.Tensor, geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """``(K+1)×256×256`` fused logits → ``(labels H×W uint8, probabilities (K+1)×H×W float32)``."""
    prob = to_probabilities(fused[None], geometry)[0]
    return prob.argmax(0).to(torch.uint8).cpu().numpy(), prob.cpu().numpy()


def score_classes(fused: torch.Tensor, labels: np.ndarray, num_classes: int) -> list[tuple[float, float]]:
    """Per-class (Dice, IoU) of one image's fused logits against its ``H×W`` class-id mask."""
    pred, _ = labels_of(fused, Geometry(*labels.shape[:2]))
    return per_class_dice_iou(pred, labels, num_classes)


class ClassScores:
    """Per-image, per-class Dice/IoU of one predictor and their means."""

    def __init__(self, classes: ClassSet) -> None:
        self.classes = classes
        self.rows: list[tuple[str, list[tuple[float, float]]]] = []

    def add(self, name: str, scores: list[tuple[float, float]]) -> None:
        self.rows.append((name, scores))

    def per_class(self) -> list[dict]:
        """``[{"id", "name", "dice", "iou"}]``: each class's mean over the images."""
        out = []
        for k, c in enumerate(self.classes):
            dice = [s[k][0] for _, s in self.rows]
            iou = [s[k][1] for _, s in self.rows]
            out.append({"id": c.id, "name": c.name, "dice": _mean(dice), "iou": _mean(iou)})
        return out

    @property
    def mean_dice(self) -> float:
        return _mean([c["dice"] for c in self.per_class()])

    @property
    def mean_iou(self) -> float:
        return _mean([c["iou"] for c in self.per_class()])

    def to_dict(self) -> dict:
        images = [{"name": n, "dice": _mean([d for d, _ in s]), "iou": _mean([i for _, i in s]),
                   "per_class": [d for d, _ in s]} for n, s in self.rows]
        return {"dice": self.mean_dice, "iou": self.mean_iou, "per_class": self.per_class(), "per_image": images}


def _mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


@torch.no_grad()
def validate(model, val, classes: ClassSet, *, batch: int, device) -> dict:
    """Mean per-class Dice/IoU of AutoSAM's and h's fused label maps on a prepared validation set.

    Returns the binary run's keys (``val_dice_autosam`` … the means over
    classes) and ``val_per_class``: ``{"autosam": [dice per class], "h": [...]}``.
    """
    heads = heads_of(model)
    model.eval()
    autosam, h = ClassScores(classes), ClassScores(classes)
    for start in range(0, len(val), batch):
        idx = list(range(start, min(len(val), start + batch)))
        g_input, embedding, _ = val.batch(idx, [0] * len(idx), device=device)
        with autocast(device):
            out = class_forward(model, heads, g_input, embedding, with_surrogate=model.surrogate is not None)
        for j, i in enumerate(idx):
            sample = val.samples[i]
            autosam.add(sample.name, score_classes(out.fused[j], sample.mask, len(classes)))
            if out.h_fused is not None:
                h.add(sample.name, score_classes(out.h_fused[j], sample.mask, len(classes)))
    return {"val_dice_autosam": autosam.mean_dice, "val_iou_autosam": autosam.mean_iou,
            "val_dice_h": h.mean_dice, "val_iou_h": h.mean_iou,
            "val_per_class": {"autosam": [c["dice"] for c in autosam.per_class()],
                              "h": [c["dice"] for c in h.per_class()]}}


def attach(model, heads: ClassHeads | None):
    """Put class heads on an AutoSAM (``model.class_heads``); returns ``model``."""
    if heads is not None:
        model.class_heads = heads.to(next(model.prompt_generator.parameters()).device)
    return model


def starting_heads(config, parent, device) -> ClassHeads | None:
    """The class heads training starts from: the warm start's, or new ones seeded by ``config.seed``.

    A config with classes on a binary warm start adds new heads to its g
    and h; classes that differ in number from the warm start's are an error.
    """
    import copy

    wanted = config_classes(config)
    have = parent.class_heads if parent is not None else None
    if have is not None:
        if wanted is not None and len(wanted) != have.num_classes:
            raise ClassesError(f"the initial model has {have.num_classes} classes; "
                               f"it cannot be fine-tuned with {len(wanted)} ({wanted.source})")
        return copy.deepcopy(have).to(device)
    if wanted is None:
        return None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 1)
        return ClassHeads(len(wanted)).to(device)


def run_classes(config, parent) -> ClassSet | None:
    """The classes a run trains: the config's, else the warm start's metadata (None: binary)."""
    wanted = config_classes(config)
    if wanted is not None:
        return wanted
    return classes_from_metadata(parent.metadata, "the initial model") if parent is not None else None


@dataclass
class ClassEvaluation:
    """Per-class scores of AutoSAM's and h's fused label maps (h None without h)."""

    autosam: ClassScores
    h: ClassScores | None

    def to_dict(self) -> dict:
        """``{"autosam": {dice, iou, per_class, per_image}, "h": {...} | None, "per_class": [...]}``.

        ``per_class``: one row per class, ``{"id", "name", "dice_autosam", "iou_autosam", "dice_h", "iou_h"}``.
        """
        h = self.h.per_class() if self.h is not None else [None] * len(self.autosam.classes)
        rows = [{"id": a["id"], "name": a["name"], "dice_autosam": a["dice"], "iou_autosam": a["iou"],
                 "dice_h": b["dice"] if b else None, "iou_h": b["iou"] if b else None}
                for a, b in zip(self.autosam.per_class(), h)]
        return {"autosam": self.autosam.to_dict(), "h": self.h.to_dict() if self.h is not None else None,
                "per_class": rows}


def evaluate_classes(sam, model, samples, *, cache=None, cancel=None):
    """Per-class Dice/IoU of a class model on samples with class-id masks; a generator of ``evaluate`` progress."""
    from ..device import pick_device
    from ..models.autosam import AutoSAM
    from ..sam.registry import check_sam_variant
    from .scoring import score_each

    check_sam_variant(model.sam_variant, sam)
    classes = classes_from_metadata(model.metadata, "the model")
    check_class_samples(samples, classes)
    device = pick_device(next(sam.parameters()).device)
    surrogate = model.surrogate.to(device) if model.surrogate is not None else None
    autosam = attach(AutoSAM(sam, model.prompt_generator.to(device), surrogate).eval(), model.class_heads)
    scores = ClassEvaluation(ClassScores(classes), ClassScores(classes) if surrogate is not None else None)

    def score_one(sample, g_input, embedding) -> dict:
        with torch.no_grad(), autocast(device):
            out = class_forward(autosam, heads_of(autosam), g_input, embedding.to(device),
                                with_surrogate=surrogate is not None)
        scores.autosam.add(sample.name, score_classes(out.fused[0], sample.mask, len(classes)))
        metrics = {"dice_autosam": scores.autosam.mean_dice}
        if scores.h is not None:
            scores.h.add(sample.name, score_classes(out.h_fused[0], sample.mask, len(classes)))
            metrics["dice_h"] = scores.h.mean_dice
        return metrics

    yield from score_each(sam, samples, autosam.input_size, device, score_one, cache=cache, cancel=cancel)
    return scores
