"""Polygons → label images: pixel-centre rasterising (shapely), tile by tile.

Pixel ``(row r, column c)`` is the unit square ``[c, c+1] × [r, r+1]`` with
x to the right and y down, origin at the top-left corner of the image.
Rasterising marks a pixel when its centre ``(c+0.5, r+0.5)`` lies inside a
polygon (a scanline fill), which gives every pixel back after a round trip
through the pixel-edge outlines of :mod:`.outlines`.  A label image bigger than memory
(a zarr array) is written tile by tile.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry


def _pixel_range(low: float, high: float, size: int) -> tuple[int, int]:
    """Pixels ``[i0, i1)`` along one axis whose centres ``i + 0.5`` can lie in ``[low, high]``."""
    return max(0, int(np.ceil(low - 0.5))), min(size, int(np.floor(high - 0.5)) + 1)


def _segments(geometry: BaseGeometry) -> np.ndarray:
    """Every edge of every ring of a (Multi)Polygon as ``(x0, y0, x1, y1)`` rows, horizontal edges left out."""
    rings = shapely.get_rings(shapely.get_parts(geometry))
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    same = ring[1:] == ring[:-1]
    segments = np.concatenate([xy[:-1][same], xy[1:][same]], axis=1)
    return segments[segments[:, 1] != segments[:, 3]]


def fill_geometry(out: np.ndarray, geometry: BaseGeometry, value: int, *, origin: tuple[int, int] = (0, 0)) -> int:
    """Set the pixels of ``out`` whose centres lie inside ``geometry`` to ``value``; return how many.

    A scanline fill: along each pixel row's centre line the polygon's edges are crossed in pairs (even-odd,
    which valid polygons and their holes obey), and the pixels whose centres lie between a pair are
    inside (a centre exactly on an edge may go either way).  The work grows with the crossings, not with
    the area times the vertices.

    Parameters
    ----------
    out : ``h×w`` numpy array, a window of the image starting at pixel ``origin = (y, x)``
    geometry : Polygon / MultiPolygon in image pixel coordinates
    value : the label to write (later calls overwrite earlier ones)
    """
    oy, ox = origin
    minx, miny, maxx, maxy = geometry.bounds
    c0, c1 = _pixel_range(minx - ox, maxx - ox, out.shape[1])
    r0, r1 = _pixel_range(miny - oy, maxy - oy, out.shape[0])
    if c1 <= c0 or r1 <= r0:
        return 0
    x0, y0, x1, y1 = _segments(geometry).T
    low, high = np.minimum(y0, y1) - oy - 0.5, np.maximum(y0, y1) - oy - 0.5
    first = np.maximum(np.ceil(low), r0).astype(np.int64)  # rows whose centre line crosses [low, high)
    stop = np.minimum(np.ceil(high), r1).astype(np.int64)
    count = np.maximum(stop - first, 0)
    edge = np.repeat(np.arange(len(count)), count)
    row = first[edge] + np.arange(len(edge)) - np.repeat(np.cumsum(count) - count, count)
    centre = row + oy + 0.5
    x = x0[edge] + (centre - y0[edge]) * (x1[edge] - x0[edge]) / (y1[edge] - y0[edge])
    order = np.lexsort((x, row))
    row, x = row[order], x[order]
    start = np.clip(np.ceil(x[0::2] - ox - 0.5), c0, c1).astype(np.int64)  # pairs of crossings per row
    end = np.clip(np.ceil(x[1::2] - ox - 0.5), c0, c1).astype(np.int64)
    rows = row[0::2]
    spans = end > start
    change = np.zeros((r1 - r0, c1 - c0 + 1), np.int32)
    np.add.at(change, (rows[spans] - r0, start[spans] - c0), 1)
    np.add.at(change, (rows[spans] - r0, end[spans] - c0), -1)
    inside = np.cumsum(change, axis=1)[:, :-1] > 0
    out[r0:r1, c0:c1][inside] = value
    return int(np.count_nonzero(inside))


def windows(shape: tuple[int, int], size: int) -> Iterator[tuple[int, int, int, int]]:
    """Row-major ``(y0, y1, x0, x1)`` windows of ``size²`` covering an ``H×W`` plane."""
    for y in range(0, shape[0], size):
        for x in range(0, shape[1], size):
            yield y, min(y + size, shape[0]), x, min(x + size, shape[1])


def rasterize(geometries: Sequence[BaseGeometry], values: Sequence[int], out, *, tile: int = 4096) -> None:
    """Draw geometries (pixel coordinates) into ``out`` (numpy or zarr, ``H×W``), tile by tile.

    Later geometries overwrite earlier ones where they overlap; pixels no
    geometry covers keep their value.  Each tile is read, drawn and written
    once, so a zarr ``out`` is never held whole.
    """
    if not len(geometries):
        return
    bounds = shapely.bounds(np.asarray(geometries, dtype=object))
    for y0, y1, x0, x1 in windows(tuple(out.shape), tile):
        hit = np.nonzero((bounds[:, 0] < x1) & (bounds[:, 2] > x0) & (bounds[:, 1] < y1) & (bounds[:, 3] > y0))[0]
        if not len(hit):
            continue
        window = np.array(out[y0:y1, x0:x1])
        for i in hit:
            fill_geometry(window, geometries[i], values[i], origin=(y0, x0))
        out[y0:y1, x0:x1] = window
