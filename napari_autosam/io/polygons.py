"""Polygons → label images: pixel-centre rasterising (shapely), tile by tile.

Pixel ``(row r, column c)`` is the unit square ``[c, c+1] × [r, r+1]`` with
x to the right and y down, origin at the top-left corner of the image.
Rasterising marks a pixel when its centre ``(c+0.5, r+0.5)`` lies inside a
polygon, which gives every pixel back after a round trip through the
pixel-edge outlines of :mod:`.outlines`.  A label image bigger than memory
(a zarr array) is written tile by tile.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

#: Side of the pixel blocks tested as a whole while rasterising (blocks inside or outside a polygon
#: are settled with one test; only blocks on its outline test each pixel centre).
BLOCK = 32


def _pixel_range(low: float, high: float, size: int) -> tuple[int, int]:
    """Pixels ``[i0, i1)`` along one axis whose centres ``i + 0.5`` can lie in ``[low, high]``."""
    return max(0, int(np.ceil(low - 0.5))), min(size, int(np.floor(high - 0.5)) + 1)


def _centres_inside(geometry: BaseGeometry, x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
    """``(y1-y0)×(x1-x0)`` bool: whether each pixel centre lies inside the (prepared) geometry."""
    xs, ys = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
    return shapely.contains_xy(geometry, xs, ys)


def fill_geometry(out: np.ndarray, geometry: BaseGeometry, value: int, *, origin: tuple[int, int] = (0, 0),
                  block: int = BLOCK) -> int:
    """Set the pixels of ``out`` whose centres lie inside ``geometry`` to ``value``; return how many.

    Parameters
    ----------
    out : ``h×w`` numpy array, a window of the image starting at pixel ``origin = (y, x)``
    geometry : Polygon / MultiPolygon in image pixel coordinates
    value : the label to write (later calls overwrite earlier ones)
    block : blocks of ``block²`` pixels wholly inside or outside are settled with one test each
    """
    oy, ox = origin
    minx, miny, maxx, maxy = geometry.bounds
    c0, c1 = _pixel_range(minx - ox, maxx - ox, out.shape[1])
    r0, r1 = _pixel_range(miny - oy, maxy - oy, out.shape[0])
    if c1 <= c0 or r1 <= r0:
        return 0
    shapely.prepare(geometry)
    if (r1 - r0) * (c1 - c0) <= 16 * block * block:
        inside = _centres_inside(geometry, ox + c0, ox + c1, oy + r0, oy + r1)
        out[r0:r1, c0:c1][inside] = value
        return int(np.count_nonzero(inside))
    bys, bxs = np.arange(r0, r1, block), np.arange(c0, c1, block)
    gy, gx = np.meshgrid(bys, bxs, indexing="ij")
    gy, gx = gy.ravel(), gx.ravel()
    ey, ex = np.minimum(gy + block, r1), np.minimum(gx + block, c1)
    # A block's square wholly inside: every centre is inside; not touching: none is.
    cells = shapely.box(ox + gx, oy + gy, ox + ex, oy + ey)
    full = shapely.contains_properly(geometry, cells)
    touched = shapely.intersects(geometry, cells) & ~full
    count = 0
    for y, x, yy, xx in zip(gy[full], gx[full], ey[full], ex[full]):
        out[y:yy, x:xx] = value
        count += (yy - y) * (xx - x)
    for y, x, yy, xx in zip(gy[touched], gx[touched], ey[touched], ex[touched]):
        inside = _centres_inside(geometry, ox + x, ox + xx, oy + y, oy + yy)
        out[y:yy, x:xx][inside] = value
        count += int(np.count_nonzero(inside))
    return int(count)


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
