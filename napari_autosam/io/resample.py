"""Area-averaged shrinking of a slide level, read lazily window by window (the working image's pixels).

:func:`napari_autosam.io.working.working_image` uses it when a µm/px asks
for a size between two pyramid levels.
"""

from __future__ import annotations

import numpy as np

from .pyramid import ResolutionError, full_key

__all__ = ["Resampled"]


class Resampled:
    """A lazy ``Y×X`` or ``Y×X×C`` array shrunk by ``factor`` (≥ 1) with area averaging.

    Working pixel ``i`` averages source pixels ``[i·f, (i+1)·f)`` weighted by
    overlap, so a value depends only on its position, never on the window
    read: tiles read separately agree with one big read.  Slicing reads only
    the source window under the requested one.  Strided slices (step > 1,
    for previews and statistics) point-sample the source instead, read with
    a matching stride so memory stays the size of the result.
    """

    def __init__(self, source, factor: float) -> None:
        if factor < 1:
            raise ValueError(f"Resampled shrinks only (factor >= 1), got {factor}")
        if source.ndim not in (2, 3) or (source.ndim == 3 and source.shape[-1] > 16):
            raise ResolutionError(f"resampling needs a Y×X or Y×X×C level, got shape {tuple(source.shape)}; "
                                  "choose a pyramid level instead")
        self.source = source
        self.factor = float(factor)
        height, width = source.shape[:2]
        self.shape = (max(1, round(height / factor)), max(1, round(width / factor)), *source.shape[2:])
        self.dtype = np.dtype(source.dtype)
        self.ndim = len(self.shape)
        self.size = int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        array = self[...]
        return array if dtype is None else array.astype(dtype)

    def __getitem__(self, key) -> np.ndarray:
        key = full_key(key, self.ndim)
        picks = tuple(0 if isinstance(k, (int, np.integer)) else slice(None) for k in key[:2])
        spans = [slice(k, k + 1) if isinstance(k, (int, np.integer)) else k for k in key[:2]]
        (y0, y1, ys), (x0, x1, xs) = spans[0].indices(self.shape[0]), spans[1].indices(self.shape[1])
        if ys <= 0 or xs <= 0:
            raise IndexError("resampled levels support only positive slice steps")
        rest = key[2:]
        if y1 <= y0 or x1 <= x0:
            return np.zeros((max(0, y1 - y0), max(0, x1 - x0), *self.shape[2:]), self.dtype)[::ys, ::xs][picks + rest]
        if ys > 1 or xs > 1:
            return self._sampled(range(y0, y1, ys), range(x0, x1, xs))[picks + rest]
        f = self.factor
        sy0, sy1 = int(np.floor(y0 * f)), min(self.source.shape[0], int(np.ceil(y1 * f)))
        sx0, sx1 = int(np.floor(x0 * f)), min(self.source.shape[1], int(np.ceil(x1 * f)))
        window = np.asarray(self.source[sy0:sy1, sx0:sx1]).astype(np.float32)
        window = _area_axis(window, 0, y0, y1, f, sy0, self.source.shape[0])
        window = _area_axis(window, 1, x0, x1, f, sx0, self.source.shape[1])
        if self.dtype.kind in "iub":
            info = np.iinfo(self.dtype) if self.dtype.kind in "iu" else None
            window = np.rint(window)
            if info is not None:
                window = np.clip(window, info.min, info.max)
        out = window.astype(self.dtype)[::ys, ::xs]
        return out[picks + rest]

    def _sampled(self, rows: range, cols: range) -> np.ndarray:
        """Strided reads (previews, statistics): the source pixel nearest each working pixel's centre.

        The source is read with a matching stride, so memory stays the size
        of the result; values are point samples, not area means.
        """
        if len(rows) == 0 or len(cols) == 0:
            return np.zeros((len(rows), len(cols), *self.shape[2:]), self.dtype)
        f, (height, width) = self.factor, self.source.shape[:2]
        wanted_y = np.minimum(((np.asarray(rows) + 0.5) * f).astype(int), height - 1)
        wanted_x = np.minimum(((np.asarray(cols) + 0.5) * f).astype(int), width - 1)
        step_y = max(1, int(rows.step * f)) if len(rows) > 1 else 1
        step_x = max(1, int(cols.step * f)) if len(cols) > 1 else 1
        (sy, iy), (sx, ix) = _nearest_grid(wanted_y, step_y), _nearest_grid(wanted_x, step_x)
        grid = np.asarray(self.source[sy, sx])
        return grid[np.minimum(iy, grid.shape[0] - 1)][:, np.minimum(ix, grid.shape[1] - 1)]


def _nearest_grid(wanted: np.ndarray, step: int) -> tuple[slice, np.ndarray]:
    """A source slice with ``step`` covering ``wanted`` indices, and each wanted index's place in it."""
    start = int(wanted[0])
    return slice(start, int(wanted[-1]) + 1, step), np.rint((wanted - start) / step).astype(int)


def _area_axis(window: np.ndarray, axis: int, o0: int, o1: int, f: float, s0: int, total: int) -> np.ndarray:
    """Average ``window`` (source rows/columns from ``s0``) over the intervals of outputs ``o0..o1`` along ``axis``.

    Output ``i`` covers source ``[i·f, (i+1)·f)`` (clipped to the source);
    each source pixel weighs by the length it overlaps: a banded sparse
    matrix (about ``f + 1`` entries per output) applied to the window.
    """
    from scipy.sparse import csr_matrix

    x = np.moveaxis(window, axis, 0)
    length = x.shape[0]
    outputs = np.arange(o0, o1, dtype=np.float64)
    low = np.clip(outputs * f, 0, total) - s0
    high = np.clip((outputs + 1) * f, 0, total) - s0
    source = np.floor(low)[:, None].astype(np.int64) + np.arange(int(np.ceil(f)) + 2)[None, :]
    overlap = np.clip(np.minimum(high[:, None], source + 1) - np.maximum(low[:, None], source), 0, None)
    overlap[(source < 0) | (source >= length)] = 0
    overlap /= np.maximum(overlap.sum(axis=1, keepdims=True), 1e-12)
    rows = np.broadcast_to(np.arange(len(outputs))[:, None], source.shape)
    keep = overlap > 0
    weights = csr_matrix((overlap[keep].astype(np.float32), (rows[keep], source[keep])), shape=(len(outputs), length))
    flat = weights @ x.reshape(length, -1)
    return np.moveaxis(np.asarray(flat, dtype=np.float32).reshape((len(outputs),) + x.shape[1:]), 0, axis)
