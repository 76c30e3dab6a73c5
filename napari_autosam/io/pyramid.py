"""A slide as a pyramid of lazy levels: the :class:`Slide` record and its read error, shared by every reader.

:func:`napari_autosam.io.slides.open_slide` picks the reader (tifffile,
OpenSlide in :mod:`.openslide_levels`, zarr in :mod:`.ngff`); each returns a
:class:`Slide`.  Nothing here opens a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .images import ImageReadError

__all__ = ["MICRONS", "ResolutionError", "Slide", "SlideReadError", "full_key"]

#: µm per unit of length, for OME and NGFF units.
MICRONS = {"m": 1e6, "meter": 1e6, "mm": 1e3, "millimeter": 1e3, "µm": 1.0, "um": 1.0, "micrometer": 1.0,
            "micron": 1.0, "nm": 1e-3, "nanometer": 1e-3, "cm": 1e4, "centimeter": 1e4}


class SlideReadError(ImageReadError):
    """A slide could not be opened; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(path, reason)
        self.args = (f"cannot read slide {str(self.path)!r}: {reason}",)

    def __str__(self) -> str:
        return self.args[0]


class ResolutionError(ValueError):
    """A working resolution that cannot be had; the message says why and what to ask instead."""


@dataclass
class Slide:
    """An opened slide; its levels read pixels on demand.

    Attributes
    ----------
    path : the file or folder
    levels : list of lazy arrays, level 0 (full resolution) first; ``Y×X×3`` uint8 for
        brightfield RGB, else as stored (``Y×X``, ``C×Y×X``); each has ``shape``, ``dtype``,
        ``ndim`` and numpy-style slicing that reads only the window asked for
    downsamples : per level, level 0's size divided by that level's (1.0 first)
    mpp : ``(y, x)`` µm per pixel at level 0, or None when the file records none
    objective_power : the scanner's objective magnification (e.g. 40.0), or None
    vendor : the format, e.g. "aperio", "hamamatsu", "generic-tiff", "ome-tiff", "ome-zarr"
    backend : the library reading the pixels: "tifffile", "openslide" or "zarr"
    """

    path: Path
    levels: list
    downsamples: list[float]
    mpp: tuple[float, float] | None
    objective_power: float | None
    vendor: str
    backend: str
    _closers: list = field(default_factory=list, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of level 0."""
        return tuple(int(s) for s in self.levels[0].shape)

    @property
    def is_rgb(self) -> bool:
        base = self.levels[0]
        return base.ndim == 3 and base.shape[-1] in (3, 4) and np.dtype(base.dtype) == np.uint8

    def level_mpp(self, level: int) -> tuple[float, float] | None:
        """``(y, x)`` µm per pixel of ``level``, or None for an uncalibrated slide."""
        if self.mpp is None:
            return None
        return self.mpp[0] * self.downsamples[level], self.mpp[1] * self.downsamples[level]

    def metadata(self) -> dict[str, Any]:
        """What a napari layer keeps about the slide (plain types only)."""
        return {
            "source": str(self.path),
            "vendor": self.vendor,
            "backend": self.backend,
            "mpp": list(self.mpp) if self.mpp else None,
            "units": "µm" if self.mpp else "uncalibrated: pixels",
            "objective_power": self.objective_power,
            "level_shapes": [list(level.shape) for level in self.levels],
            "downsamples": list(self.downsamples),
        }

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers.clear()


def full_key(key, ndim: int) -> tuple:
    """``key`` as a tuple of ``ndim`` ints/slices (Ellipsis expanded)."""
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        at = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:at] + (slice(None),) * (ndim - len(key) + 1) + key[at + 1:]
    if len(key) > ndim:
        raise IndexError(f"too many indices for a {ndim}-dimensional slide level")
    return tuple(key) + (slice(None),) * (ndim - len(key))
