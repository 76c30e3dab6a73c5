"""Validation with few corrections: hold out a spatial strip of each image instead of a whole image.

With one or two corrected images, holding out a whole image leaves little
or nothing to train on, and validating on the training image measures
memory, not skill (it reads "validation Dice 1.000").  Instead a strip
along one side of each image (``val_strip`` of its area) becomes a
validation sample and the rest a training sample; the two are cut apart, so
no pixel of the strip, image or label, reaches training.  Of the four
sides, the strip whose share of foreground is closest to the whole mask's
is chosen (ties: bottom, right, top, left).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from .data import Sample

#: Images fewer than this get held-out strips (when no validation set is given).
STRIP_BELOW = 3
#: A strip (and the rest) must keep at least this many pixels across.
MIN_SIDE = 16

VAL_KIND_STRIP = "held-out strip"
VAL_KIND_IMAGES = "held-out images"
VAL_KIND_GIVEN = "given"
VAL_KIND_SELF = "training image"


def _crop(sample: Sample, rows: slice, cols: slice, suffix: str) -> Sample:
    return dataclasses.replace(sample, name=f"{sample.name}{suffix}", image=np.ascontiguousarray(sample.image[rows, cols]),
                               mask=np.ascontiguousarray(sample.mask[rows, cols]), _key=None)


def _sides(height: int, width: int, fraction: float):
    """``(name, strip (rows, cols), rest (rows, cols))`` for the four sides, in tie-break order."""
    k_rows = int(round(height * fraction))
    k_cols = int(round(width * fraction))
    full = slice(None)
    if MIN_SIDE <= k_rows <= height - MIN_SIDE:
        yield "bottom", (slice(height - k_rows, height), full), (slice(0, height - k_rows), full)
    if MIN_SIDE <= k_cols <= width - MIN_SIDE:
        yield "right", (full, slice(width - k_cols, width)), (full, slice(0, width - k_cols))
    if MIN_SIDE <= k_rows <= height - MIN_SIDE:
        yield "top", (slice(0, k_rows), full), (slice(k_rows, height), full)
    if MIN_SIDE <= k_cols <= width - MIN_SIDE:
        yield "left", (full, slice(0, k_cols)), (full, slice(k_cols, width))


def split_strip(sample: Sample, fraction: float) -> tuple[Sample, Sample] | None:
    """``(train part, validation strip)`` of one sample, or None when it is too small to cut."""
    height, width = sample.mask.shape
    overall = float(sample.mask.mean())
    best = None
    for side, strip, rest in _sides(height, width, fraction):
        gap = abs(float(sample.mask[strip].mean()) - overall)
        if best is None or gap < best[0] - 1e-9:
            best = (gap, side, strip, rest)
    if best is None:
        return None
    _, side, strip, rest = best
    return _crop(sample, *rest, ""), _crop(sample, *strip, f"[{side} strip]")


def strip_split(samples: Sequence[Sample], fraction: float) -> tuple[list[Sample], list[Sample]] | None:
    """Train parts and validation strips of every sample; None when any sample is too small to cut."""
    train, val = [], []
    for sample in samples:
        parts = split_strip(sample, fraction)
        if parts is None:
            return None
        train.append(parts[0])
        val.append(parts[1])
    return train, val
