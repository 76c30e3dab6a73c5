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


@dataclass(frozen=True)
class WindowInfo:
    """One segmented window (a tile of a plane, or the whole plane) and what the model said of it.

    Attributes
    ----------
    z : the slice (0 for a single plane)
    window, core : ``(y0, y1, x0, x1)`` of the tile and of its core (the cores of all tiles
        partition the plane), in the input's pixels
    predicted_iou : SAM's own estimate of the IoU of its mask for this window (the mask
        decoder's IoU head), or None in a preview (no SAM)
    """

    z: int
    window: tuple[int, int, int, int]
    core: tuple[int, int, int, int]
    predicted_iou: float | None = None


@dataclass
class SegmentationResult:
    """Masks and probabilities at the input's resolution (``Y×X`` or ``Z×Y×X``).

    Attributes
    ----------
    autosam_prob : float32 in [0, 1], SAM's mask decoder prompted with g(I); None in a
        preview (``segment(..., preview=True)``: h(g(I)) only, SAM's encoder never runs)
    autosam_mask : uint8 0/1, ``autosam_prob > 0.5``; None in a preview
    h_prob, h_mask : the same for the surrogate h(g(I)); None when the model has no h
    instances : int32 labels (0 background), in ``mode="instances"``; else None.
        Stacks get per-slice instances with ids unique over the stack.
    agreement : Dice between ``autosam_mask`` and ``h_mask`` per slice (1.0 when both
        are empty; empty list without h, or in a preview)
    normalization : the intensity scaling used (pass it back to reproduce it)
    store : directory holding the zarr arrays of a tiled result (the caller owns it),
        or None when every array is in memory
    cancelled : True when a cancel request stopped the run: unvisited tiles/slices are 0
    untrained : True when the untrained default model made it
    messages : notes for the user (e.g. why the result is empty)
    windows : every window segmented, with SAM's predicted IoU (see :class:`WindowInfo`)
    preview : True for an h-only preview
    """

    autosam_prob: np.ndarray | None
    autosam_mask: np.ndarray | None
    h_prob: np.ndarray | None
    h_mask: np.ndarray | None
    instances: np.ndarray | None
    agreement: list[float]
    normalization: Normalization
    store: Path | None = None
    cancelled: bool = False
    untrained: bool = False
    messages: list[str] = field(default_factory=list)
    windows: list[WindowInfo] = field(default_factory=list)
    preview: bool = False


class Accumulator:
    """Output arrays of one segmentation, filled tile by tile.

    Parameters
    ----------
    shape : ``(H, W)`` for one plane or ``(Z, H, W)`` for a stack
    with_h, with_instances, with_autosam : which outputs exist (no AutoSAM in a preview)
    store : directory for zarr arrays, or None for numpy
    """

    def __init__(self, shape: tuple[int, ...], *, with_h: bool, with_instances: bool, store: Path | None,
                 with_autosam: bool = True) -> None:
        self.shape = tuple(shape)
        self.store = store
        self.autosam_prob = create_array(shape, np.float32, store=store, name="autosam_prob") if with_autosam else None
        self.h_prob = create_array(shape, np.float32, store=store, name="h_prob") if with_h else None
        self.instances = create_array(shape, np.int32, store=store, name="instances") if with_instances else None
        self.next_label = 1
        self.windows: list[WindowInfo] = []  # every window segmented, in order

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
        with_autosam = self.autosam_prob is not None
        autosam_mask = create_array(self.shape, np.uint8, store=self.store, name="autosam_mask") if with_autosam else None
        h_mask = create_array(self.shape, np.uint8, store=self.store, name="h_mask") if self.h_prob is not None else None
        agreement = []
        for z in range(1 if len(self.shape) == 2 else self.shape[0]):
            inter = total = 0
            for window in blocks(self.shape[-2:]):
                index = self.index(z, window)
                if h_mask is not None:
                    h = np.asarray(self.h_prob[index]) > 0.5
                    h_mask[index] = h.astype(np.uint8)
                if not with_autosam:
                    continue
                a = np.asarray(self.autosam_prob[index]) > 0.5
                autosam_mask[index] = a.astype(np.uint8)
                if h_mask is not None:
                    counts = dice_counts(a, h)
                    inter, total = inter + counts[0], total + counts[1]
            if h_mask is not None and with_autosam:
                agreement.append(dice_from_counts(inter, total))
        arrays = {"autosam_prob": self.autosam_prob, "autosam_mask": autosam_mask, "h_prob": self.h_prob,
                  "h_mask": h_mask, "instances": self.instances}
        return arrays, agreement
