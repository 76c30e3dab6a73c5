"""OpenSlide's pyramid levels as read-only arrays, and OpenSlide's metadata (µm/px, objective power, vendor).

Used by :func:`napari_autosam.io.slides.open_slide` for the formats only
OpenSlide reads, and for the metadata of TIFF-based slides whose pixels
tifffile reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .pyramid import Slide, SlideReadError, full_key

__all__ = ["OpenSlideLevel", "full_key", "open_openslide", "openslide_format", "openslide_meta"]

#: Strided reads of OpenSlide levels are done in blocks of about this many source pixels on a side.
STRIDED_BLOCK = 2048


def openslide_format(path: Path) -> str | None:
    import openslide

    try:
        return openslide.OpenSlide.detect_format(str(path))
    except Exception:  # unreadable file: tifffile's error is the clearer one
        return None


def openslide_meta(handle) -> tuple[tuple[float, float] | None, float | None, str]:
    """µm/px ``(y, x)``, objective power and vendor from OpenSlide's standard properties."""
    props = handle.properties

    def number(key: str) -> float | None:
        try:
            value = float(props[key])
        except (KeyError, ValueError):
            return None
        return value if np.isfinite(value) and value > 0 else None

    mpp_x, mpp_y = number("openslide.mpp-x"), number("openslide.mpp-y")
    mpp = (mpp_y or mpp_x, mpp_x or mpp_y) if (mpp_x or mpp_y) else None
    return mpp, number("openslide.objective-power"), props.get("openslide.vendor", "unknown")


class OpenSlideLevel:
    """One OpenSlide pyramid level as a read-only ``Y×X×3`` uint8 array; slicing calls ``read_region``.

    Transparent pixels (outside the scanned area) come back as the slide's
    background colour (white unless the slide says otherwise).
    """

    def __init__(self, handle, level: int, background: tuple[int, int, int]) -> None:
        self._handle = handle
        self._level = level
        self._downsample = float(handle.level_downsamples[level])
        width, height = handle.level_dimensions[level]
        self.shape = (int(height), int(width), 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 3
        self.size = int(np.prod(self.shape))
        self._background = np.asarray(background, dtype=np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        array = self[:, :, :]
        return array if dtype is None else array.astype(dtype)

    def __getitem__(self, key) -> np.ndarray:
        key = full_key(key, self.ndim)
        if any(isinstance(k, (int, np.integer)) for k in key[:2]):  # rows or columns picked one by one
            rows, cols = (slice(k, k + 1 if k != -1 else None) if isinstance(k, (int, np.integer)) else k
                          for k in key[:2])
            squeeze = tuple(0 if isinstance(k, (int, np.integer)) else slice(None) for k in key[:2])
            return self[rows, cols, key[2]][squeeze]
        (y0, y1, ys), (x0, x1, xs) = key[0].indices(self.shape[0]), key[1].indices(self.shape[1])
        if ys <= 0 or xs <= 0:
            raise IndexError("OpenSlide levels support only positive slice steps")
        rows, cols = range(y0, y1, ys), range(x0, x1, xs)
        out = np.zeros((len(rows), len(cols), 3), np.uint8)
        # Strided reads go block by block, so memory stays bounded (about 2048² source pixels at a time).
        by, bx = max(1, STRIDED_BLOCK // ys), max(1, STRIDED_BLOCK // xs)
        for i in range(0, len(rows), by):
            for j in range(0, len(cols), bx):
                top, left = rows[i], cols[j]
                bottom, right = rows[min(i + by, len(rows)) - 1] + 1, cols[min(j + bx, len(cols)) - 1] + 1
                out[i:i + by, j:j + bx] = self._window(top, bottom, left, right)[::ys, ::xs]
        return out[..., key[2]]

    def _window(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        location = (round(x0 * self._downsample), round(y0 * self._downsample))
        rgba = np.asarray(self._handle.read_region(location, self._level, (x1 - x0, y1 - y0)))
        rgb = rgba[..., :3].copy()
        rgb[rgba[..., 3] == 0] = self._background
        return rgb


def open_openslide(path: Path) -> Slide:
    import openslide

    try:
        handle = openslide.OpenSlide(str(path))
    except Exception as error:  # OpenSlideUnsupportedFormatError, OpenSlideError, OSError
        raise SlideReadError(path, _openslide_reason(error)) from error
    mpp, power, vendor = openslide_meta(handle)
    background = handle.properties.get("openslide.background-color", "FFFFFF")
    try:
        colour = tuple(int(background[i:i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        colour = (255, 255, 255)
    levels = [OpenSlideLevel(handle, level, colour) for level in range(handle.level_count)]
    downsamples = [float(d) for d in handle.level_downsamples]
    return Slide(path, levels, downsamples, mpp, power, vendor, "openslide", [handle.close])


def _openslide_reason(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    if type(error).__name__ == "OpenSlideUnsupportedFormatError":
        return "not a slide format OpenSlide knows, or a damaged file"
    return f"OpenSlide: {text}"
