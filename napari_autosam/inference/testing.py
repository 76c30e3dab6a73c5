"""A model with a known answer, for tests and demos that need a predictable h(g(I)).

:func:`threshold_model` gives a g and an h (as a :class:`ModelCheckpoint`)
whose surrogate mask h(g(I)) is exactly "mean intensity above a threshold"
at the prompt generator's input resolution: g folds the gray image into
the dense prompt's channels (a 4×4 pixel unshuffle of a 256² input gives
16×64×64), h unfolds it.  With tiles of ``input_size`` pixels no resampling
happens at all, so tiled and untiled outputs can be compared exactly.
SAM's own mask for that prompt is whatever SAM makes of it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.checkpoint import ModelCheckpoint
from ..sam.embedding import PIXEL_MEAN, PIXEL_STD


class _FoldGray(nn.Module):
    """g: ``B×3×S×S`` normalised RGB → ``B×256×64×64`` holding the gray image folded into channels."""

    def __init__(self, input_size: int) -> None:
        super().__init__()
        if input_size % 64 or input_size > 512:
            raise ValueError("input_size must be 64, 128, 192, ..., 512")
        self.input_size = input_size
        self.fold = input_size // 64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(PIXEL_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(PIXEL_STD, device=x.device).view(1, 3, 1, 1)
        gray = ((x * std + mean) / 255.0).mean(1, keepdim=True)  # back to [0, 1]
        folded = F.pixel_unshuffle(gray, self.fold)
        return F.pad(folded, (0, 0, 0, 0, 0, 256 - folded.shape[1]))


class _ThresholdUnfold(nn.Module):
    """h: unfold the gray image, logits ``gain × (gray − threshold)`` at 256²."""

    def __init__(self, fold: int, threshold: float, gain: float) -> None:
        super().__init__()
        self.fold, self.threshold, self.gain = fold, threshold, gain

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        gray = F.pixel_shuffle(z[:, : self.fold**2], self.fold)
        logits = self.gain * (gray - self.threshold)
        return F.interpolate(logits, size=(256, 256), mode="nearest") if gray.shape[-1] != 256 else logits


def threshold_model(threshold: float = 0.5, *, input_size: int = 256, gain: float = 40.0) -> ModelCheckpoint:
    """g and h such that h(g(I)) > 0.5 exactly where the image's mean (0-1 scaled) RGB exceeds ``threshold``."""
    g = _FoldGray(input_size)
    return ModelCheckpoint(g, _ThresholdUnfold(g.fold, threshold, gain), {"test_model": "threshold"})
