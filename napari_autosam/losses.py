"""The AutoSAM loss (BCE + Dice, eq. 2-4) and the per-image metrics."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """``1 - (2TP + s) / (2TP + FN + FP + s)`` on sigmoid probabilities, averaged over the batch.

    Parameters
    ----------
    logits : B×1×H×W (or B×H×W) float tensor
    target : same shape, values in [0, 1] (soft targets: the foreground fraction per pixel)
    """
    prob = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    tp = (prob * target).sum(1)
    fp = (prob * (1 - target)).sum(1)
    fn = ((1 - prob) * target).sum(1)
    return (1 - (2 * tp + smooth) / (2 * tp + fn + fp + smooth)).mean()


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Unweighted sum of binary cross-entropy (mean over pixels) and the soft Dice loss."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    return bce + soft_dice_loss(logits, target, smooth)


def dice_counts(a, b) -> tuple[int, int]:
    """``(|a ∩ b|, |a| + |b|)`` of two masks (numpy or array-like; anything > 0 is foreground).

    Sum the counts over blocks or slices and pass them to :func:`dice_from_counts`
    to get the Dice of masks too big to hold at once.
    """
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    return int(np.count_nonzero(a & b)), int(np.count_nonzero(a)) + int(np.count_nonzero(b))


def dice_from_counts(intersection: int, total: int) -> float:
    """``2 |a ∩ b| / (|a| + |b|)``; 1.0 when both masks are empty (they agree)."""
    return 1.0 if total == 0 else 2.0 * intersection / total


def dice(a, b) -> float:
    """Dice of two binary masks (anything > 0 is foreground); 1.0 when both are empty.

    The one Dice of the package: training metrics, evaluation, the agreement
    of h(g(I)) with AutoSAM, the demo and the widget all use it.
    """
    return dice_from_counts(*dice_counts(a, b))


def dice_iou(pred, truth) -> tuple[float, float]:
    """Dice and IoU of two binary masks (numpy or torch; anything > 0 is foreground).

    Two empty masks agree perfectly (1.0, 1.0): an image with no object
    that the model leaves empty is a correct answer, not a division by zero.
    """
    p = np.asarray(pred.detach().cpu() if torch.is_tensor(pred) else pred) > 0
    t = np.asarray(truth.detach().cpu() if torch.is_tensor(truth) else truth) > 0
    if p.shape != t.shape:
        raise ValueError(f"masks differ in shape: {p.shape} vs {t.shape}")
    inter, total = dice_counts(p, t)
    if total == 0:
        return 1.0, 1.0
    return dice_from_counts(inter, total), float(inter / (total - inter))


def threshold_metrics(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> list[tuple[float, float]]:
    """Per-image (Dice, IoU) after thresholding sigmoid(logits) at ``threshold``."""
    pred = torch.sigmoid(logits.float()) > threshold
    return [dice_iou(p, t) for p, t in zip(pred, target)]


#: RMS that :func:`logit_gain` brings the frozen decoder's logits to, and its largest gain.
GAIN_TARGET_RMS = 4.0
GAIN_MAX = 16.0


def logit_gain(logits: torch.Tensor, target_rms: float = GAIN_TARGET_RMS, max_gain: float = GAIN_MAX) -> torch.Tensor:
    """Detached gain ``k = clip(target_rms / rms(logits), 1, max_gain)`` for the AutoSAM loss.

    A frozen mask decoder whose logits stay small (the test-sized SAM's
    random decoder reaches about ±1 when driven by g's tanh-bounded prompt)
    can never make BCE confident, so the loss keeps pushing for magnitude
    instead of the boundary.  The loss is computed on ``k · logits``; as
    ``k > 0`` the predicted mask (``logits > 0``, probability 0.5) is the same
    with or without it.  For SAM's trained decoders, whose logits are
    already large, ``k`` is 1: the paper's loss.

    Parameters
    ----------
    logits : B×1×H×W float tensor
    target_rms, max_gain : float

    Returns
    -------
    0-d float tensor, no gradient.
    """
    rms = logits.detach().float().pow(2).mean().sqrt().clamp_min(1e-6)
    return (target_rms / rms).clamp(1.0, max_gain)


def summary_gain(gains: list[float], fallback: float = 1.0) -> float:
    """The gain recorded for a run: the median of its last (up to 50) g steps, else ``fallback``."""
    recent = sorted(gains[-50:])
    return float(recent[len(recent) // 2]) if recent else float(fallback)


# --- classes (a class model: K binary maps and one fused K+1 label map) --------------------------------


def background_target(target: torch.Tensor) -> torch.Tensor:
    """``B×K×H×W`` soft class fractions → ``B×(K+1)×H×W`` with the background fraction first."""
    target = target.float()
    return torch.cat([(1 - target.sum(1, keepdim=True)).clamp(0, 1), target], dim=1)


def label_dice_loss(fused: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice of softmax(``fused``) per class channel (background excluded), mean over images and classes.

    fused : B×(K+1)×H×W label logits; target : B×K×H×W soft class fractions.
    """
    prob = torch.softmax(fused.float(), dim=1)[:, 1:].flatten(2)
    target = target.float().flatten(2)
    tp = (prob * target).sum(2)
    total = prob.sum(2) + target.sum(2)
    return (1 - (2 * tp + smooth) / (total + smooth)).mean()


def class_loss(binary_logits: torch.Tensor | None, fused: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The class model's loss: BCE + Dice on each class's binary map, plus CE + Dice on the fused map.

    Parameters
    ----------
    binary_logits : B×K×H×W or None
        One logit map per class (SAM's or h's); None: the fused terms only.
    fused : B×(K+1)×H×W
        The adapter's label logits (channel 0 background).
    target : B×K×H×W
        Soft class fractions in [0, 1] (their sum is at most 1 per pixel).
    """
    loss = F.cross_entropy(fused.float(), background_target(target)) + label_dice_loss(fused, target)
    if binary_logits is not None:  # each (image, class) map is one binary problem
        loss = loss + bce_dice_loss(binary_logits.flatten(0, 1)[:, None], target.flatten(0, 1)[:, None])
    return loss


def per_class_dice_iou(pred, truth, num_classes: int) -> list[tuple[float, float]]:
    """Dice and IoU of each class ``1..K`` of two class-id label images (the one Dice, per class).

    A class absent from both images scores (1.0, 1.0), as two empty masks do.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    return [dice_iou(pred == k, truth == k) for k in range(1, int(num_classes) + 1)]
