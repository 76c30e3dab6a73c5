"""Tiles with overlap for large 2D images, blending weights, and tile-by-tile outputs.

A large image is cut into ``tile × tile`` windows that overlap by at least
``overlap`` pixels; each window is segmented on its own and the probability
maps are blended with weights that ramp linearly across every overlap and
sum to exactly one at each pixel.  The grid is a product of two 1D grids, so
the weights are products of 1D weights and their normalisation is exact.

Each tile also owns a *core*: the part of the image nearer to it than to
any neighbour (the overlaps are split in the middle).  The cores partition
the image; an object found in a tile is kept only when its seed point lies
in that tile's core, so every object is produced once (``instances.py``).

Outputs of images bigger than one tile live on disk, in zarr arrays written
tile by tile (read-modify-write of the tile's window), so the memory held
does not grow with the image.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Planes larger than this on a side (pixels) are tiled when no tile size is given (GUI, CLI, API).
AUTO_TILE_ABOVE = 2048
#: The tile size used then: SAM's own input size.
AUTO_TILE = 1024
#: Overlap between neighbouring tiles, in pixels, unless one is given.
DEFAULT_OVERLAP = 64
#: How much larger than the tile size a window may grow to save an encoder pass (1/16: 1024 → 1088 px).
TILE_STRETCH = 1 / 16


@dataclass(frozen=True)
class Span:
    """One tile along one axis: the window ``[start, stop)`` and its core ``[core_start, core_stop)``."""

    start: int
    stop: int
    core_start: int
    core_stop: int
    overlap_before: int  # pixels shared with the previous tile (0 at the image edge)
    overlap_after: int

    def weights(self) -> np.ndarray:
        """Un-normalised 1D blending weights over the window: linear ramps across the overlaps, 1 elsewhere."""
        n = self.stop - self.start
        t = np.arange(n, dtype=np.float64) + 0.5
        w = np.ones(n)
        if self.overlap_before:
            w = np.minimum(w, t / self.overlap_before)
        if self.overlap_after:
            w = np.minimum(w, (n - t) / self.overlap_after)
        return w


def axis_spans(length: int, tile: int, overlap: int, *, max_tile: int | None = None) -> list[Span]:
    """Split ``[0, length)`` into windows of ``tile`` pixels overlapping by at least ``overlap``.

    Windows are spread evenly, the first starting at 0 and the last ending at
    ``length``; one window covers the axis when ``length <= tile``.

    ``max_tile`` (default ``tile``) lets the windows grow up to that size
    when this saves windows: the fewest windows of ``tile..max_tile`` pixels
    that still overlap by ``overlap`` are used (e.g. 4096 px with 1024-px
    tiles and a 64-px overlap: 4 windows of 1072 px instead of 5 of 1024).
    SAM resizes every window to 1024 px anyway, so a slightly larger window
    only costs a few percent of resolution, not an encoder pass.
    """
    max_tile = tile if max_tile is None else max(tile, int(max_tile))
    if tile < 1 or overlap < 0 or overlap >= tile:
        raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}")
    if length <= max_tile:
        return [Span(0, length, 0, length, 0, 0)]
    count = math.ceil((length - overlap) / (max_tile - overlap))
    tile = max(tile, math.ceil((length + (count - 1) * overlap) / count))
    starts = np.round(np.linspace(0, length - tile, count)).astype(int).tolist()
    spans = []
    for i, start in enumerate(starts):
        stop = start + tile
        before = (starts[i - 1] + tile - start) if i > 0 else 0
        after = (stop - starts[i + 1]) if i + 1 < count else 0
        core_start = start + before // 2 if i > 0 else 0
        core_stop = stop - (after - after // 2) if i + 1 < count else length
        spans.append(Span(start, stop, core_start, core_stop, before, after))
    return spans


@dataclass(frozen=True)
class Tile:
    """One window of a 2D grid and its core, in image pixels."""

    index: int
    y: Span
    x: Span
    weight_y: np.ndarray  # normalised 1D weights over the window (rows)
    weight_x: np.ndarray  # (columns)

    @property
    def window(self) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of the window."""
        return self.y.start, self.y.stop, self.x.start, self.x.stop

    @property
    def core(self) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)`` of the core, in image pixels."""
        return self.y.core_start, self.y.core_stop, self.x.core_start, self.x.core_stop

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y.start, self.y.stop), slice(self.x.start, self.x.stop)

    def weight(self) -> np.ndarray:
        """``h×w`` float32 blending weights of this window; all tiles' weights sum to 1 at every pixel."""
        return np.outer(self.weight_y, self.weight_x).astype(np.float32)

    def in_core(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Whether window-relative points ``(y, x)`` lie in this tile's core."""
        y = np.asarray(y) + self.y.start
        x = np.asarray(x) + self.x.start
        y0, y1, x0, x1 = self.core
        return (y >= y0) & (y < y1) & (x >= x0) & (x < x1)


def _normalised_weights(spans: list[Span], length: int) -> list[np.ndarray]:
    total = np.zeros(length)
    raw = [span.weights() for span in spans]
    for span, w in zip(spans, raw):
        total[span.start : span.stop] += w
    return [w / total[span.start : span.stop] for span, w in zip(spans, raw)]


def tile_grid(shape: tuple[int, int], tile: int, overlap: int, *, max_tile: int | None = None) -> list[Tile]:
    """Tiles covering an ``H×W`` image in raster order (rows of tiles, top to bottom).

    ``max_tile``: windows may grow up to that size to save tiles (see :func:`axis_spans`).
    """
    height, width = (int(s) for s in shape)
    rows = axis_spans(height, tile, overlap, max_tile=max_tile)
    cols = axis_spans(width, tile, overlap, max_tile=max_tile)
    wy, wx = _normalised_weights(rows, height), _normalised_weights(cols, width)
    tiles = []
    for i, (ry, wyi) in enumerate(zip(rows, wy)):
        for j, (cx, wxj) in enumerate(zip(cols, wx)):
            tiles.append(Tile(i * len(cols) + j, ry, cx, wyi, wxj))
    return tiles


# --- the one tiling rule of the GUI, the CLI and the Python API ----------------------------


#: Review regions (``review``, the widget's Review): tiles of this size, overlapping by REVIEW_OVERLAP.
REVIEW_TILE = 1024
REVIEW_OVERLAP = 128


def review_tile(plane_shape: tuple[int, ...], tile: int = REVIEW_TILE) -> int | None:
    """The review's tile for a plane: ``tile`` when the plane is larger, else None (the plane is one region)."""
    return tile if max(int(s) for s in plane_shape[-2:]) > tile else None


def auto_tile(plane_shape: tuple[int, ...]) -> int | None:
    """The tile size for a plane when none is given: :data:`AUTO_TILE` above :data:`AUTO_TILE_ABOVE` px, else None."""
    return AUTO_TILE if max(int(s) for s in plane_shape[-2:]) > AUTO_TILE_ABOVE else None


def stretched(tile: int) -> int:
    """The largest window a segmentation tile of ``tile`` px may grow to (:data:`TILE_STRETCH` more)."""
    return int(tile + math.floor(tile * TILE_STRETCH))


def segmentation_tiles(plane_shape: tuple[int, int], tile: int | None, overlap: int = DEFAULT_OVERLAP) -> list[Tile]:
    """The tiles the segmenter cuts a ``H×W`` plane into (one window when ``tile`` is None).

    Windows of ``tile`` to :func:`stretched` ``(tile)`` pixels overlapping by
    at least ``overlap``: the fewest encoder passes that leave the blending
    its overlap.  The GUI's prompts look their tile up here too, so they hit
    the embeddings the segmentation cached.
    """
    height, width = (int(s) for s in plane_shape[-2:])
    if not tile:
        return tile_grid((height, width), max(height, width), 0)
    return tile_grid((height, width), tile, overlap, max_tile=stretched(tile))


def passes_per_plane(plane_shape: tuple[int, int], tile: int | None = None, overlap: int = DEFAULT_OVERLAP) -> int:
    """How many encoder passes (tiles) a plane costs; ``tile=None`` applies :func:`auto_tile`."""
    return len(segmentation_tiles(plane_shape, tile if tile is not None else auto_tile(plane_shape), overlap))


# --- tiles fitted to the tissue (whole slides) -----------------------------------------------


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` of every run of True in a 1D bool array."""
    edges = np.diff(np.concatenate([[0], flags.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _cores_needed(start: int, stop: int, length: int, core: int, half: int) -> int:
    """How many cores of at most ``core`` px cover ``[start, stop)``; one at the plane's edge may be ``half`` longer."""
    bonus = half * (start == 0) + half * (stop == length)
    return max(1, math.ceil((stop - start - bonus) / core))


def _merge_runs(runs: list[tuple[int, int]], length: int, core: int, half: int) -> list[tuple[int, int]]:
    """Join neighbouring runs whenever one stretch of cores over both (and their gap) costs no more windows."""
    merged: list[tuple[int, int]] = []
    for a, b in runs:
        if merged:
            s, e = merged[-1]
            together = _cores_needed(s, b, length, core, half)
            if together <= _cores_needed(s, e, length, core, half) + _cores_needed(a, b, length, core, half):
                merged[-1] = (s, b)
                continue
        merged.append((a, b))
    return merged


def _window(c0: int, c1: int, length: int, tile: int, half: int) -> tuple[int, int]:
    """The window around core ``[c0, c1)``: ``half`` px of context each side, at least ``tile`` px where the plane allows."""
    w0, w1 = max(0, c0 - half), min(length, c1 + half)
    short = min(tile, length) - (w1 - w0)
    if short > 0:
        w0 = max(0, w0 - (short + 1) // 2)
        w1 = min(length, w0 + min(tile, length))
        w0 = w1 - min(tile, length)
    return w0, w1


def _fit_sizes(tile: int, overlap: int) -> tuple[int, int, int]:
    """``(half, most, core)``: context each side of a fitted core, the largest window, the largest inner core."""
    half, most = overlap // 2, stretched(tile)
    return half, most, most - 2 * half


def _stretches(length: int, profile: np.ndarray, scale: float, core: int, half: int) -> list[tuple[int, int]]:
    """The kept stretches of a coarse 1D profile in plane pixels, neighbours joined where that costs no window."""
    runs = [(max(0, math.floor(a * scale)), min(length, math.ceil(b * scale))) for a, b in _runs(profile)]
    return _merge_runs([(a, b) for a, b in runs if b > a], length, core, half)


def _glass(a: int, b: int, most: int) -> list[tuple[int, int, bool]]:
    """``[a, b)`` of glass cut into even pieces of at most ``most`` px."""
    if b <= a:
        return []
    edges = np.round(np.linspace(a, b, math.ceil((b - a) / most) + 1)).astype(int).tolist()
    return [(e0, e1, False) for e0, e1 in zip(edges, edges[1:])]


def _spans(cuts: list[tuple[int, int, bool]], length: int, tile: int, half: int) -> list[tuple[Span, bool]]:
    spans = []
    for c0, c1, kept in cuts:
        w0, w1 = _window(c0, c1, length, tile, half) if kept else (c0, c1)
        spans.append((Span(w0, w1, c0, c1, c0 - w0, w1 - c1), kept))
    return spans


def fitted_spans(length: int, keep: np.ndarray, scale: float, tile: int, overlap: int) -> list[tuple[Span, bool]]:
    """Split ``[0, length)`` into cores fitted to the kept stretches, and each core's window.

    ``keep`` is a coarse 1D bool profile (one element per ``scale`` px).  Every kept
    stretch is covered by the fewest cores whose windows (``overlap / 2`` px of context
    each side, at most :func:`stretched` ``(tile)`` px) fit, spread evenly over it; the
    stretches between are cut into glass pieces of at most that size.  Returns
    ``(span, kept)`` pairs in order; a glass piece's window is its core.
    """
    half, most, core = _fit_sizes(tile, overlap)
    cuts: list[tuple[int, int, bool]] = []
    position = 0
    for a, b in _stretches(length, np.asarray(keep), scale, core, half):
        cuts += _glass(position, a, most)
        n = _cores_needed(a, b, length, core, half)
        inner0, inner1 = a + half * (a == 0), b - half * (b == length)  # edge cores take the plane's edge free
        edges = np.round(np.linspace(inner0, inner1, n + 1)).astype(int).tolist()
        edges[0], edges[-1] = a, b
        cuts += [(e0, e1, True) for e0, e1 in zip(edges, edges[1:])]
        position = b
    return _spans(cuts + _glass(position, length, most), length, tile, half)


def _bands(keep: np.ndarray, rows_per_band: int, cost) -> list[tuple[int, int, bool]]:
    """Cut the mask's rows into bands of at most ``rows_per_band`` rows with the least total ``cost``.

    ``cost(profile)`` is the number of windows a band whose columns' kept profile is
    ``profile`` needs.  Rows without kept pixels may stay outside every band (glass).
    An exact dynamic programme over the cut positions; returns ``(first, stop, kept)`` runs of rows.
    """
    height = keep.shape[0]
    any_row = keep.any(axis=1)
    best = [0] + [math.inf] * height
    back: list[tuple[int, bool]] = [(0, False)] * (height + 1)
    for stop in range(1, height + 1):
        if not any_row[stop - 1] and best[stop - 1] < best[stop]:
            best[stop], back[stop] = best[stop - 1], (stop - 1, False)
        profile, windows = np.zeros(keep.shape[1], bool), 0
        for first in range(stop - 1, max(-1, stop - 1 - rows_per_band), -1):
            if (keep[first] & ~profile).any():  # the band's windows change only with new kept columns
                profile |= keep[first]
                windows = cost(profile)
            if windows:
                total = best[first] + windows
                if total < best[stop]:
                    best[stop], back[stop] = total, (first, True)
    runs, stop = [], height
    while stop > 0:
        first, kept = back[stop]
        if runs and not kept and not runs[-1][2]:
            runs[-1] = (first, runs[-1][1], False)  # consecutive glass rows: one run
        else:
            runs.append((first, stop, kept))
        stop = first
    return runs[::-1]


def fitted_tiles(plane_shape: tuple[int, int], keep: np.ndarray, scale: tuple[float, float], tile: int,
                 overlap: int = DEFAULT_OVERLAP) -> tuple[list[Tile], list[bool]]:
    """Tiles fitted to a coarse mask of what to segment (a slide's tissue), and which of them to segment.

    ``keep`` is an ``h×w`` bool mask, one pixel per ``scale = (sy, sx)`` plane pixels.
    The rows are cut into bands so that the windows fitted along all bands are the fewest
    (:func:`_bands`); within each band the windows are fitted to the kept columns
    (:func:`fitted_spans`).  So the windows cover what is kept with fewer passes than the
    regular grid, whose tiles fall where they fall.  The cores still partition the plane
    (glass pieces fill the rest); windows are not blended (each core takes its own
    window's prediction), so the weights are 1.  Tiles are in raster order.
    """
    height, width = (int(s) for s in plane_shape)
    keep = np.asarray(keep, bool)
    sy, sx = (float(v) for v in scale)
    half, most, core = _fit_sizes(tile, overlap)
    pool = max(1, math.ceil(core / sy / 64))  # at most 64 mask rows a band: the programme stays quick
    if pool > 1:
        rows = math.ceil(keep.shape[0] / pool) * pool
        padded = np.zeros((rows, keep.shape[1]), bool)
        padded[: keep.shape[0]] = keep
        keep, sy = padded.reshape(-1, pool, keep.shape[1]).any(axis=1), sy * pool

    def cost(profile: np.ndarray) -> int:
        return sum(_cores_needed(a, b, width, core, half) for a, b in _stretches(width, profile, sx, core, half))

    cuts, profiles = [], []
    for first, stop, kept in _bands(keep, max(1, math.floor((core + 1) / sy)), cost):
        y0, y1 = min(height, round(first * sy)), min(height, round(stop * sy))
        pieces = [(y0, y1, True)] if kept and y1 > y0 else _glass(y0, y1, most)
        cuts += pieces
        profiles += [keep[first:stop].any(axis=0) if kept else np.zeros(1, bool)] * len(pieces)
    tiles, flags = [], []
    for (band, band_kept), profile in zip(_spans(cuts, height, tile, half), profiles):
        for span, kept in fitted_spans(width, profile, sx, tile, overlap):
            tiles.append(Tile(len(tiles), band, span, np.ones(band.stop - band.start), np.ones(span.stop - span.start)))
            flags.append(band_kept and kept)
    return tiles, flags


# --- outputs --------------------------------------------------------------------------------


def new_scratch_dir(parent: str | os.PathLike | None = None) -> Path:
    """A fresh directory for the on-disk outputs of one large segmentation (default: in the temp folder).

    Removed when the process exits, unless the caller removed it before;
    those of processes that died are removed by the next one.
    """
    from ..io.atomic import scratch_folder

    return scratch_folder(parent if parent is not None else tempfile.gettempdir(), "napari-autosam-seg-")


def create_array(shape: tuple[int, ...], dtype, *, store: Path | None, name: str, chunk: int = 1024):
    """A zero-filled output: numpy in memory when ``store`` is None, else a zarr array at ``store/name``."""
    if store is None:
        return np.zeros(shape, dtype=dtype)
    import zarr

    chunks = tuple([1] * (len(shape) - 2) + [min(chunk, s) for s in shape[-2:]])
    return zarr.create_array(
        store=str(Path(store) / f"{name}.zarr"), shape=shape, chunks=chunks, dtype=dtype, fill_value=0, overwrite=True
    )


def add_window(array, window: tuple[slice, ...], values: np.ndarray) -> None:
    """``array[window] += values``; for a zarr array a read-modify-write of that window only."""
    if isinstance(array, np.ndarray):
        array[window] += values
    else:
        array[window] = array[window] + values


def blocks(shape: tuple[int, int], block: int = 2048) -> Iterator[tuple[slice, slice]]:
    """Row-major ``block × block`` windows covering an ``H×W`` plane (for chunk-wise passes)."""
    for y in range(0, shape[0], block):
        for x in range(0, shape[1], block):
            yield slice(y, min(y + block, shape[0])), slice(x, min(x + block, shape[1]))
