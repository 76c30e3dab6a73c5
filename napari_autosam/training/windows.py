"""Big samples become windows of the segmentation tile size, at their own resolution.

Segmentation cuts planes larger than a tile into ``tile²`` windows and
hands each to SAM and g at that scale.  Training must see objects at the
same scale, so a sample larger than ``window`` on a side is cut the same
way instead of being resized into SAM's frame.  The windows overlap by a
quarter of a window, so a region gives a fixed set of shifted crops: each
window is its own picture with its own exact, cached SAM embedding, and the
training loop draws windows at random, which is the (exact) random-crop
augmentation of big regions.  Offsets between the grid positions would need
new encoder passes per step, so they are not used.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from ..inference.tiling import tile_grid
from .data import Sample

#: Overlap of neighbouring training windows, as a share of the window.
WINDOW_OVERLAP = 0.25


def window_boxes(shape: tuple[int, int], window: int) -> list[tuple[int, int, int, int]]:
    """``(y0, y1, x0, x1)`` windows of at most ``window²`` covering an ``H×W`` plane (the tiling grid)."""
    if window <= 0 or max(shape) <= window:
        return [(0, int(shape[0]), 0, int(shape[1]))]
    tiles = tile_grid(shape, window, int(window * WINDOW_OVERLAP))
    return [t.window for t in tiles]


def window_samples(samples: Sequence[Sample], window: int | None) -> list[Sample]:
    """Each sample larger than ``window`` on a side replaced by its windows (named ``stem@y0,x0``).

    Windows keep their sample's ``source``, so a validation split never puts
    two windows of one region on both sides.  ``window`` 0 or None keeps
    every sample whole.
    """
    out: list[Sample] = []
    for sample in samples:
        boxes = window_boxes(sample.mask.shape, window or 0)
        if len(boxes) == 1:
            out.append(sample)
            continue
        for y0, y1, x0, x1 in boxes:
            out.append(dataclasses.replace(
                sample, name=f"{sample.name}@{y0},{x0}", image=np.ascontiguousarray(sample.image[y0:y1, x0:x1]),
                mask=np.ascontiguousarray(sample.mask[y0:y1, x0:x1]), _key=None))
    return out
