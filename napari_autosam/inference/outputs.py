"""The result of a segmentation and the arrays it is accumulated in.

Probabilities of overlapping tiles are blended into float32 sums (the
weights of :mod:`.tiling` sum to one), then thresholded at 0.5 into masks,
block by block, with the Dice agreement of the two masks counted on the way.
Images needing more than one tile per plane get zarr arrays on disk; the
rest stays in memory as numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.normalize import Normalization
from ..losses import dice_counts, dice_from_counts
from .tiling import blocks, create_array


@dataclass
class SegmentationResult:
    """Masks and probabilities at the input's resolution (``Y×X`` or ``Z×Y×X``).

    Attributes
    ----------
    autosam_prob : float32 in [0, 1], SAM's mask decoder prompted with g(I)
    autosam_mask : uint8 0/1, ``autosam_prob > 0.5``
    h_prob, h_mask : the same for the surrogate h(g(I)); None when the model has no h
    instances : int32 labels (0 background), in ``mode="instances"``; else None.
        Stacks get per-slice instances with ids unique over the stack.
    agreement : Dice between ``autosam_mask`` and ``h_mask`` per slice (1.0 when both
        are empty; empty list without h)
    normalization : the intensity scaling used (pass it back to reproduce it)
    store : directory holding the zarr arrays of a tiled result (the caller owns it),
        or None when every array is in memory
    cancelled : True when a cancel request stopped the run: unvisited tiles/slices are 0
    untrained : True when the untrained default model made it
    messages : notes for the user (e.g. why the result is empty)
    """

    autosam_prob: np.ndarray
    autosam_mask: np.ndarray
    h_prob: np.ndarray | None
    h_mask: np.ndarray | None
    instances: np.ndarray | None
    agreement: list[float]
    normalization: Normalization
    store: Path | None = None
    cancelled: bool = False
    untrained: bool = False
    messages: list[str] = field(default_factory=list)


class Accumulator:
    """Output arrays of one segmentation, filled tile by tile.

    Parameters
    ----------
    shape : ``(H, W)`` for one plane or ``(Z, H, W)`` for a stack
    with_h, with_instances : which outputs exist
    store : directory for zarr arrays, or None for numpy
    """

    def __init__(self, shape: tuple[int, ...], *, with_h: bool, with_instances: bool, store: Path | None) -> None:
        self.shape = tuple(shape)
        self.store = store
        self.autosam_prob = create_array(shape, np.float32, store=store, name="autosam_prob")
        self.h_prob = create_array(shape, np.float32, store=store, name="h_prob") if with_h else None
        self.instances = create_array(shape, np.int32, store=store, name="instances") if with_instances else None
        self.next_label = 1

    def index(self, z: int, window: tuple[slice, slice]) -> tuple:
        return window if len(self.shape) == 2 else (z, *window)

    def add(self, z: int, window: tuple[slice, slice], weight: np.ndarray, autosam: np.ndarray, h: np.ndarray | None):
        """Blend one tile's probabilities into plane ``z``."""
        index = self.index(z, window)
        for array, values in ((self.autosam_prob, autosam), (self.h_prob, h)):
            if values is None:
                continue
            if isinstance(array, np.ndarray):
                array[index] += weight * values
            else:  # zarr: read-modify-write of this window only
                array[index] = array[index] + weight * values

    def labels_window(self, z: int, window: tuple[slice, slice]) -> np.ndarray:
        """A copy of the labels in a window (write it back with :meth:`put_labels`)."""
        return np.array(self.instances[self.index(z, window)])

    def put_labels(self, z: int, window: tuple[slice, slice], labels: np.ndarray) -> None:
        self.instances[self.index(z, window)] = labels

    def finish(self) -> tuple[dict, list[float]]:
        """Threshold into masks, block by block; return the output arrays and the per-plane agreement."""
        autosam_mask = create_array(self.shape, np.uint8, store=self.store, name="autosam_mask")
        h_mask = create_array(self.shape, np.uint8, store=self.store, name="h_mask") if self.h_prob is not None else None
        agreement = []
        for z in range(1 if len(self.shape) == 2 else self.shape[0]):
            inter = total = 0
            for window in blocks(self.shape[-2:]):
                index = self.index(z, window)
                a = np.asarray(self.autosam_prob[index]) > 0.5
                autosam_mask[index] = a.astype(np.uint8)
                if h_mask is not None:
                    h = np.asarray(self.h_prob[index]) > 0.5
                    h_mask[index] = h.astype(np.uint8)
                    counts = dice_counts(a, h)
                    inter, total = inter + counts[0], total + counts[1]
            if h_mask is not None:
                agreement.append(dice_from_counts(inter, total))
        arrays = {"autosam_prob": self.autosam_prob, "autosam_mask": autosam_mask, "h_prob": self.h_prob,
                  "h_mask": h_mask, "instances": self.instances}
        return arrays, agreement
