"""Pixel-exact outlines of a label image, traced along pixel edges in time that grows with their length.

Pixel ``(row r, column c)`` is the unit square ``[c, c+1] × [r, r+1]``, x to
the right and y down.  Every edge between two pixels of different labels (the
image border counts as label 0) is a piece of the outline of each non-zero
label beside it.  Straight runs of such edges are collected band by band;
each label's runs are then chained into rings, horizontal and vertical runs
taking turns, always keeping the label's pixels on the right-hand side (on screen, y down).

Rings that wind one way are shells, the others holes; each hole belongs to the
smallest shell of its label around it.  Where a label's pixels touch only at a
corner, the ring turns around the pixel it came along, so parts that meet at a
corner stay apart; a ring that still comes back to a corner it passed (a hole
touching its shell there) is split into two simple rings.  The result is a
valid shapely geometry per label, with no collinear vertices.

Unioning pixel boxes (the obvious way) grows much faster than the outline:
a ragged region of a few megapixels with thousands of holes took minutes.
"""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

#: Rows of a label image read at once while tracing outlines.
BAND = 1024


def _runs(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal non-zero values along each line: ``line, start, stop, value`` (stop exclusive)."""
    height, width = lines.shape
    padded = np.zeros((height, width + 2), dtype=lines.dtype)
    padded[:, 1:-1] = lines
    line, edges = np.nonzero(padded[:, 1:] != padded[:, :-1])  # where the value changes
    same_line = line[1:] == line[:-1]
    line, starts, stops = line[:-1][same_line], edges[:-1][same_line], edges[1:][same_line]
    values = lines[line, starts]
    keep = values != 0
    return line[keep], starts[keep], stops[keep], values[keep]


class _Runs:
    """Directed straight runs of outline: start and end vertices, label, and whether they are horizontal."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, x0, y0, x1, y1, label, horizontal: bool) -> None:
        flag = np.full(len(label), horizontal)
        points = tuple(np.asarray(a, np.int32) for a in (x0, y0, x1, y1))  # a plane under 2³¹ px a side
        self.parts.append(points + (np.asarray(label, np.int64), flag))

    def arrays(self) -> tuple[np.ndarray, ...]:
        if not self.parts:
            return tuple(np.zeros(0, np.int32) for _ in range(4)) + (np.zeros(0, np.int64), np.zeros(0, bool))
        return tuple(np.concatenate(column) for column in zip(*self.parts))


def _band_runs(runs: _Runs, rows: np.ndarray, y0: int, count: int, width: int) -> None:
    """Add the runs of one band: ``rows`` holds the row above the band (zeros at the top), the band's
    ``count`` rows, and a row of zeros below when the band is the image's last."""
    above, below = rows[:-1], rows[1:]
    edge = above != below  # horizontal edge on line y0 + k between rows k and k + 1 of ``rows``
    line, start, stop, label = _runs(np.where(edge, below, 0))  # label below: walk +x
    runs.add(start, line + y0, stop, line + y0, label, True)
    line, start, stop, label = _runs(np.where(edge, above, 0))  # label above: walk -x
    runs.add(stop, line + y0, start, line + y0, label, True)
    own = np.zeros((count, width + 2), rows.dtype)
    own[:, 1:-1] = rows[1 : count + 1]
    left, right = own[:, :-1], own[:, 1:]  # either side of column line x = 0 … width
    edge = left != right
    x, start, stop, label = _runs(np.where(edge, left, 0).T)  # label on the left: walk +y
    runs.add(x, start + y0, x, stop + y0, label, False)
    x, start, stop, label = _runs(np.where(edge, right, 0).T)  # label on the right: walk -y
    runs.add(x, stop + y0, x, start + y0, label, False)


def _join_vertical(x0, y0, x1, y1, label, horizontal):
    """Join the vertical runs that bands cut at their seams (same label, line and direction, end to start)."""
    if not len(label):
        return x0, y0, x1, y1, label, horizontal
    h = np.nonzero(horizontal)[0]
    v = np.nonzero(~horizontal)[0]
    down = y1[v] > y0[v]
    low, high = np.minimum(y0[v], y1[v]), np.maximum(y0[v], y1[v])
    order = np.lexsort((low, x0[v], label[v], down))
    low, high, down = low[order], high[order], down[order]
    vx, vlabel = x0[v][order], label[v][order]
    joined = np.ones(len(order), bool)
    joined[1:] = ~((down[1:] == down[:-1]) & (vlabel[1:] == vlabel[:-1]) & (vx[1:] == vx[:-1])
                   & (low[1:] == high[:-1]))
    first = np.nonzero(joined)[0]
    last = np.r_[first[1:], len(order)] - 1
    low, high, down = low[first], high[last], down[first]
    vy0, vy1 = np.where(down, low, high), np.where(down, high, low)
    cat = np.concatenate
    return (cat([x0[h], vx[first]]), cat([y0[h], vy0]), cat([x1[h], vx[first]]), cat([y1[h], vy1]),
            cat([label[h], vlabel[first]]), cat([np.ones(len(h), bool), np.zeros(len(first), bool)]))


def _successors(key, x0, y0, x1, y1, horizontal, dense, shape) -> np.ndarray:
    """For each run, the run that follows it on its ring: the run of the other orientation and the same
    label that starts where it ends.  At a corner where the label's pixels touch only diagonally two
    runs start there; the ring takes the one that turns around the pixel it came along."""
    end = (dense.astype(np.int64) * (shape[0] + 1) + y1) * (shape[1] + 1) + x1
    # In screen terms (y down) the label lies right of every run, so the turn around the same pixel
    # is +x then +y, -x then -y, +y then -x, -y then +x.
    forward = np.where(horizontal, x1 > x0, y1 > y0)
    want = np.where(horizontal, forward, ~forward)  # the "forward" bit of the run to take next
    successor = np.empty(len(key), np.int64)
    for kind in (True, False):
        here, there = np.nonzero(horizontal == kind)[0], np.nonzero(horizontal != kind)[0]
        keys = key[there] * 2 + forward[there]
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        wanted = end[here] * 2 + want[here]
        exact = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
        other = np.minimum(np.searchsorted(keys, end[here] * 2), len(keys) - 1)
        chosen = np.where(keys[exact] == wanted, exact, other)
        if not np.all(keys[chosen] // 2 == end[here]):
            raise RuntimeError("outline runs do not close into rings")  # a bug, never bad input
        successor[here] = there[order[chosen]]
    return successor


def _rings(successor: np.ndarray) -> list[np.ndarray]:
    """The cycles of a permutation, each as the run indices in order."""
    nxt = successor.tolist()
    seen = bytearray(len(nxt))
    rings = []
    for first in range(len(nxt)):
        if seen[first]:
            continue
        ring, i = [], first
        while not seen[i]:
            seen[i] = 1
            ring.append(i)
            i = nxt[i]
        rings.append(np.asarray(ring, np.int64))
    return rings


def _simple_loops(ring: np.ndarray, vertex: np.ndarray, corner: np.ndarray) -> list[np.ndarray]:
    """Split a ring that passes a vertex twice into loops that pass each vertex once (``corner``: the
    runs that start at a corner where the label's pixels touch diagonally, the only place that can be)."""
    if not corner[ring].any():
        return [ring]
    keys = vertex[ring]
    loops, stack, where = [], [], {}
    for run, key in zip(ring.tolist(), keys.tolist()):
        if key in where:
            at = where[key]
            loops.append(np.asarray(stack[at:], np.int64))
            for gone in vertex[np.asarray(stack[at:], np.int64)].tolist():
                where.pop(gone, None)
            del stack[at:]
        where[key] = len(stack)
        stack.append(run)
    loops.append(np.asarray(stack, np.int64))
    return [loop for loop in loops if len(loop)]


def _owners(shells: np.ndarray, shell_label: np.ndarray, shell_area: np.ndarray, points: np.ndarray,
            hole_label: np.ndarray) -> np.ndarray:
    """For each hole (a point inside it and its label), the index of the smallest shell of the same
    label around it."""
    if not len(points):
        return np.zeros(0, np.int64)
    tree = shapely.STRtree(shells)
    hole, shell = tree.query(shapely.points(points))
    same = shell_label[shell] == hole_label[hole]
    hole, shell = hole[same], shell[same]
    shapely.prepare(shells)
    inside = shapely.contains_xy(shells[shell], points[hole, 0], points[hole, 1])
    hole, shell = hole[inside], shell[inside]
    order = np.lexsort((shell_area[shell], hole))
    hole, shell = hole[order], shell[order]
    first = np.r_[True, hole[1:] != hole[:-1]]
    owner = np.full(len(points), -1, np.int64)
    owner[hole[first]] = shell[first]
    if np.any(owner < 0):
        raise RuntimeError("an outline hole lies in no shell")  # a bug, never bad input
    return owner


def _read_runs(labels, band: int) -> tuple[np.ndarray, ...]:
    """Every straight run of outline in ``labels``, read ``band`` rows at a time."""
    height, width = (int(n) for n in labels.shape)
    runs = _Runs()
    above = None
    for y0 in range(0, height, band):
        block = np.asarray(labels[y0 : y0 + band])
        if block.dtype.kind not in "biu":
            raise ValueError(f"labels must be integers, got dtype {block.dtype}")
        if above is None:
            above = np.zeros((1, width), block.dtype)
        tail = [np.zeros((1, width), block.dtype)] if y0 + len(block) >= height else []
        _band_runs(runs, np.concatenate([above, block, *tail]), y0, len(block), width)
        above = block[-1:]
    return _join_vertical(*runs.arrays())


def _loops(x0, y0, x1, y1, label, horizontal, shape) -> list[np.ndarray]:
    """The runs chained into simple rings, each as run indices in walking order."""
    _, dense = np.unique(label, return_inverse=True)
    key = (dense.astype(np.int64) * (shape[0] + 1) + y0) * (shape[1] + 1) + x0  # a vertex of a label
    successor = _successors(key, x0, y0, x1, y1, horizontal, dense, shape)
    _, seen, count = np.unique(key * 2 + horizontal, return_inverse=True, return_counts=True)
    corner = count[seen] > 1  # two runs of one label and orientation start here: a diagonal corner
    return [loop for ring in _rings(successor) for loop in _simple_loops(ring, key, corner)]


def _polygons(loops, x0, y0, x1, y1, label) -> tuple[np.ndarray, np.ndarray]:
    """Polygons (holes in their shells) and their labels, from the simple rings."""
    sizes = np.array([len(loop) for loop in loops])
    order = np.concatenate(loops)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    xs, ys = x0[order].astype(float), y0[order].astype(float)
    nx, ny = np.roll(xs, -1), np.roll(ys, -1)
    nx[starts + sizes - 1], ny[starts + sizes - 1] = xs[starts], ys[starts]
    area = np.add.reduceat(xs * ny - nx * ys, starts) / 2  # > 0: a shell (clockwise on screen)
    ring_label = label[order[starts]]
    rings = shapely.linearrings(np.stack([xs, ys], 1), indices=np.repeat(np.arange(len(loops)), sizes))
    shell_ids, hole_ids = np.nonzero(area > 0)[0], np.nonzero(area < 0)[0]
    # A point inside each hole: the centre of the pixel left of its first run (the label is right).
    first = order[starts[hole_ids]]
    dx, dy = np.sign(x1[first] - x0[first]), np.sign(y1[first] - y0[first])
    inside = np.stack([x0[first] + 0.5 * dx + 0.5 * dy, y0[first] + 0.5 * dy - 0.5 * dx], 1)
    shells = shapely.polygons(rings[shell_ids])
    owner = _owners(shells, ring_label[shell_ids], area[shell_ids], inside, ring_label[hole_ids])
    group = np.concatenate([np.arange(len(shell_ids)), owner])  # each shell first, then its holes
    members = np.concatenate([shell_ids, hole_ids])
    by = np.lexsort((np.r_[np.zeros(len(shell_ids)), np.ones(len(hole_ids))], group))
    polygons = shapely.polygons(rings[members[by]], indices=group[by])
    return shapely.orient_polygons(polygons), ring_label[shell_ids]


def label_outlines(labels, *, band: int = BAND) -> dict[int, BaseGeometry]:
    """The outline of every label as a shapely Polygon or MultiPolygon, in pixel coordinates.

    Parameters
    ----------
    labels : ``H×W`` integer array (numpy or lazy, read ``band`` rows at a time); 0 is background
    band : rows read at a time

    Returns
    -------
    dict label → geometry, in increasing label order: a Polygon (exterior counter-clockwise in x-right,
    y-up terms, as GeoJSON asks) or a MultiPolygon when the label has parts that are not 4-connected,
    parts that touch only at a corner included.
    """
    if len(labels.shape) != 2:
        raise ValueError(f"expected a 2D label image, got shape {tuple(labels.shape)}")
    x0, y0, x1, y1, label, horizontal = _read_runs(labels, band)
    if not len(label):
        return {}
    loops = _loops(x0, y0, x1, y1, label, horizontal, tuple(int(n) for n in labels.shape))
    polygons, shell_label = _polygons(loops, x0, y0, x1, y1, label)
    by = np.argsort(shell_label, kind="stable")
    ids, count = np.unique(shell_label[by], return_counts=True)
    return {int(value): parts[0] if len(parts) == 1 else shapely.MultiPolygon(list(parts))
            for value, parts in zip(ids.tolist(), np.split(polygons[by], np.cumsum(count)[:-1]))}
