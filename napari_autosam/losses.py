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


def dice_iou(pred, truth) -> tuple[float, float]:
    """Dice and IoU of two binary masks (numpy or torch; anything > 0 is foreground).

    Two empty masks agree perfectly (1.0, 1.0): an image with no object
    that the model leaves empty is a correct answer, not a division by zero.
    """
    p = np.asarray(pred.detach().cpu() if torch.is_tensor(pred) else pred) > 0
    t = np.asarray(truth.detach().cpu() if torch.is_tensor(truth) else truth) > 0
    if p.shape != t.shape:
        raise ValueError(f"masks differ in shape: {p.shape} vs {t.shape}")
    inter = np.logical_and(p, t).sum()
    total = p.sum() + t.sum()
    union = np.logical_or(p, t).sum()
    if total == 0:
        return 1.0, 1.0
    return float(2 * inter / total), float(inter / union)


def threshold_metrics(logits: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> list[tuple[float, float]]:
    """Per-image (Dice, IoU) after thresholding sigmoid(logits) at ``threshold``."""
    pred = torch.sigmoid(logits.float()) > threshold
    return [dice_iou(p, t) for p, t in zip(pred, target)]
