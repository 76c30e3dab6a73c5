"""Logits → probabilities in a window's own pixels: the one rule every predictor's output goes through.

A decoder's logits are ``B×C×256×256`` in SAM's padded frame.  They are
mapped back to the window (:func:`~napari_autosam.sam.embedding.frame_to_original`),
multiplied by the model's recorded logit gain (AutoSAM's binary logits only,
see :func:`napari_autosam.losses.probability_gain`; 1 for h and for class
maps) and turned into probabilities: a sigmoid for one channel (binary),
a softmax over the channels for a class model's ``K+1`` label logits.
"""

from __future__ import annotations

import torch

from ..sam.embedding import Geometry, frame_to_original


def to_probabilities(logits: torch.Tensor, geometry: Geometry, *, gain: float = 1.0) -> torch.Tensor:
    """``B×C×256×256`` padded-frame logits → ``B×C×H×W`` probabilities (float32, on the logits' device).

    ``gain`` multiplies the logits before the sigmoid (masks, ``logit > 0``,
    do not depend on it).  One channel: sigmoid; more: softmax over channels.
    """
    logits = frame_to_original(logits.float(), geometry)
    if gain != 1.0:
        logits = gain * logits
    return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)
