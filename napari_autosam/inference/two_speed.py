"""Whole slides in two speeds: h(g(I)) over every tissue tile first, then SAM where it matters.

A slide's plane (at the working resolution) is cut into tiles fitted to its
tissue (:func:`~napari_autosam.inference.tiling.fitted_tiles`: bands of rows,
then windows along each band, placed where the tissue
(:class:`~napari_autosam.io.tissue.TissueMask`) is rather than on a fixed grid),
so fewer windows cover it.  The glass between is never read or encoded; its
labels stay 0 and are never written.

1. **Fast pass**: h(g(I)) on every tissue tile, its core written to the ``h``
   labels and, as the best so far, to the ``autosam`` labels.  When it ends
   the ``h`` labels are complete.
2. **SAM pass**: the tissue tiles ranked by how unsure h is there (the share of
   pixels with a probability between 0.25 and 0.75, as in the review score),
   most unsure first; AutoSAM (SAM's encoder and decoder with g's prompt) on
   the first ones — the top ``share`` of them (``sam_on="uncertain"``), all
   (``"all"``) or none (``"none"``) — each replacing its core in the
   ``autosam`` labels.  A budget (seconds, or a tile count) and the cancel
   token stop it between tiles: the labels then hold SAM where it ran and h
   elsewhere, and :attr:`TwoSpeedResult.tiles` says which is which.

Each tile's core takes the prediction of its own window (the window's margin
gives context; no blending), so a tile is wholly SAM or wholly h.  Labels go
to a *sink* (:class:`ArraySink` in memory, :class:`LabelImageSink` into
OME-Zarr label images) core by core, so the caller can show them filling in.
No napari or Qt here.
"""

from __future__ import annotations

import bisect
import functools
import time
from dataclasses import dataclass, field

import numpy as np

from ..io.normalize import Normalization
from ..progress import CancelToken, Stopwatch, Task
from .inputs import image_layout
from .tiling import DEFAULT_OVERLAP, Tile, fitted_tiles, segmentation_tiles

__all__ = ["SAM_ON", "ArraySink", "LabelImageSink", "SamPlan", "TileRecord", "TwoSpeedResult", "plan_tiles",
           "two_speed"]

#: What the SAM pass runs on.
SAM_ON = ("uncertain", "all", "none")


@dataclass(frozen=True)
class SamPlan:
    """Where and how long the SAM pass runs.

    Attributes
    ----------
    on : "uncertain" (the ``share`` of tissue tiles where h is least sure), "all" or "none"
    share : for "uncertain", the share (0-1) of tissue tiles
    seconds : stop the SAM pass before a tile that would end past this many seconds (None: no limit)
    tiles : at most this many SAM tiles (None: no limit)
    """

    on: str = "uncertain"
    share: float = 0.2
    seconds: float | None = None
    tiles: int | None = None

    def __post_init__(self) -> None:
        if self.on not in SAM_ON:
            raise ValueError(f"sam_on must be one of {', '.join(SAM_ON)}, got {self.on!r}")
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"the SAM share must lie in [0, 1], got {self.share}")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"the SAM pass's time budget must be positive, got {self.seconds}")
        if self.tiles is not None and self.tiles < 0:
            raise ValueError(f"the SAM pass's tile count must not be negative, got {self.tiles}")

    def wanted(self, n_tissue: int) -> int:
        """How many of ``n_tissue`` ranked tiles the plan asks SAM for (before the time budget)."""
        count = {"all": n_tissue, "none": 0}.get(self.on, int(np.ceil(self.share * n_tissue)))
        return count if self.tiles is None else min(count, int(self.tiles))


@dataclass
class TileRecord:
    """What one tile got.

    Attributes
    ----------
    index : the tile's number in the plane's grid
    window, core : ``(y0, y1, x0, x1)`` at the working resolution
    tissue : share of the core that is tissue (0-1)
    source : "skipped" (no tissue: labels 0), "h" (h(g(I)) only) or "sam" (AutoSAM)
    uncertainty : h's unsure share in the core (None when skipped)
    foreground : pixels of the core that the AutoSAM labels hold (h's until SAM replaces them)
    """

    index: int
    window: tuple[int, int, int, int]
    core: tuple[int, int, int, int]
    tissue: float
    source: str = "skipped"
    uncertainty: float | None = None
    foreground: int = 0


@dataclass
class TwoSpeedResult:
    """The outcome of :func:`two_speed`.

    Attributes
    ----------
    tiles : a record per tile of the plane
    h_seconds, sam_seconds : time of the fast pass and of the SAM pass
    stopped : why the SAM pass ended early: "" (it did not), "budget", "cancelled"
    cancelled : the run was cancelled (in either pass)
    """

    tiles: list[TileRecord]
    normalization: Normalization
    h_seconds: float = 0.0
    sam_seconds: float = 0.0
    stopped: str = ""
    cancelled: bool = False
    messages: list[str] = field(default_factory=list)

    def count(self, source: str) -> int:
        return sum(r.source == source for r in self.tiles)

    @property
    def tissue_fraction(self) -> float:
        """Share of the plane's tile cores that is tissue (area-weighted)."""
        areas = [(r.core[1] - r.core[0]) * (r.core[3] - r.core[2]) for r in self.tiles]
        return float(np.dot(areas, [r.tissue for r in self.tiles]) / max(1, sum(areas)))

    @property
    def foreground(self) -> float:
        """Share of the plane that the AutoSAM labels hold, counted as the cores were written (nothing read back)."""
        areas = [(r.core[1] - r.core[0]) * (r.core[3] - r.core[2]) for r in self.tiles]
        return sum(r.foreground for r in self.tiles) / max(1, sum(areas))

    @functools.cached_property
    def _by_band(self) -> tuple[list[int], list[list[int]], list[list[TileRecord]]]:
        """The tiles by band, built once: the bands' core starts (sorted), and per band its tiles' core starts and tiles."""
        by_band: dict[int, list[TileRecord]] = {}
        for r in self.tiles:
            by_band.setdefault(r.core[0], []).append(r)
        starts = sorted(by_band)
        rows = [sorted(by_band[s], key=lambda r: r.core[2]) for s in starts]
        return starts, [[r.core[2] for r in row] for row in rows], rows

    def source_at(self, y: float, x: float) -> str:
        """What made the labels at working-resolution pixel ``(y, x)``: "sam", "h" or "skipped" (glass, outside)."""
        starts, columns, rows = self._by_band
        i = bisect.bisect_right(starts, y) - 1
        j = bisect.bisect_right(columns[i], x) - 1 if i >= 0 else -1
        record = rows[i][j] if j >= 0 else None
        if record is None or not (record.core[0] <= y < record.core[1] and record.core[2] <= x < record.core[3]):
            return "skipped"
        return record.source


def plan_tiles(plane_shape: tuple[int, int], tissue=None, *, downsample: float = 1.0, tile: int | None = 1024,
               overlap: int = DEFAULT_OVERLAP) -> tuple[list[Tile], list[float]]:
    """The plane's tiles and the tissue share of each tile's core.

    ``tissue`` is a TissueMask over level 0 (None: all tissue); ``downsample`` is
    level-0 pixels per working pixel.  Without tissue to skip, the tiles are the
    segmenter's regular grid; otherwise they are fitted to the tissue
    (:func:`~napari_autosam.inference.tiling.fitted_tiles`), and glass pieces get a share of 0.
    """
    if tissue is None or tissue.everything or not tile:
        tiles = segmentation_tiles(tuple(plane_shape), tile, overlap)
        if tissue is None:
            return tiles, [1.0] * len(tiles)
        return tiles, [tissue.box_fraction(tuple(v * downsample for v in t.core)) for t in tiles]
    scale = (tissue.downsample[0] / downsample, tissue.downsample[1] / downsample)
    tiles, kept = fitted_tiles(tuple(plane_shape), tissue.mask, scale, tile, overlap)
    return tiles, [tissue.box_fraction(tuple(v * downsample for v in t.core)) if k else 0.0
                   for t, k in zip(tiles, kept)]


class ArraySink:
    """Labels in memory: ``arrays[role]`` is an ``H×W`` uint8 mask per role ("h", "autosam")."""

    def __init__(self, plane_shape: tuple[int, int]) -> None:
        self.arrays = {role: np.zeros(plane_shape, np.uint8) for role in ("h", "autosam")}

    def put(self, role: str, box: tuple[int, int, int, int], values: np.ndarray) -> None:
        y0, y1, x0, x1 = box
        self.arrays[role][y0:y1, x0:x1] = values


class LabelImageSink:
    """Labels into OME-Zarr label images (:class:`~napari_autosam.io.labels_zarr.LabelImage`), core by core.

    Only the chunks under a written core (and their pyramid footprint) are stored;
    chunks of skipped tiles are never written and read back as 0.
    """

    def __init__(self, images: dict) -> None:
        self.images = images

    def put(self, role: str, box: tuple[int, int, int, int], values: np.ndarray) -> None:
        if role in self.images:
            self.images[role].update_region(box, values)


def _window_rgb(segmenter, image, layout, t: Tile, normalization, channels) -> np.ndarray:
    return segmenter.read_batch(image, layout, [(0, t)], normalization, channels)[0]


def _h_probability(segmenter, rgb: np.ndarray) -> np.ndarray:
    """h(g(I)) probability of one window (no SAM)."""
    return segmenter.window_probabilities([rgb], None)[0][0][1]


def _sam_probability(segmenter, rgb: np.ndarray) -> Task[np.ndarray]:
    """AutoSAM's probability of one window (SAM's encoder and decoder, g's prompt, the model's logit gain)."""
    embeddings = yield from segmenter.embed_windows([rgb], False)
    return segmenter.window_probabilities([rgb], embeddings)[0][0][0]


def _core(values: np.ndarray, t: Tile) -> np.ndarray:
    wy0, _, wx0, _ = t.window
    y0, y1, x0, x1 = t.core
    return values[y0 - wy0 : y1 - wy0, x0 - wx0 : x1 - wx0]


def two_speed(segmenter, image, sink, *, tissue=None, downsample: float = 1.0, tile: int | None = 1024,
              overlap: int = DEFAULT_OVERLAP, plan: SamPlan | None = None, channel_axis: int | None = None,
              channels=None, normalization: Normalization | None = None, cancel: CancelToken | None = None,
              clock=time.monotonic) -> Task[TwoSpeedResult]:
    """Segment one plane in two speeds (see the module docstring); a generator of progress.

    Parameters
    ----------
    segmenter : Segmenter with a surrogate h
    image : a 2D plane (``Y×X``, ``Y×X×C``), numpy or lazy: only tissue tiles' windows are read
    sink : where labels go (``put(role, core_box, mask)``): :class:`ArraySink`, :class:`LabelImageSink`
    tissue, downsample : a TissueMask over level 0 and level-0 pixels per working pixel (None: all tissue)
    plan : the SAM pass (default: the most unsure 20 % of tissue tiles, no time limit)
    clock : seconds, monotonic (tests pass a fake one)

    Events: phase "h" (fast pass), then "sam".  Returns a :class:`TwoSpeedResult`.
    """
    from .review_scores import uncertainty
    from .segmenter import whole_image_normalization

    plan = plan or SamPlan()
    if segmenter.model.surrogate is None:
        raise ValueError("the two-speed path needs the surrogate h, and this model has none")
    layout = image_layout(image, channel_axis, stack=False)
    if normalization is None:
        normalization = whole_image_normalization(image, layout, channels)
    tiles, shares = plan_tiles(layout.plane_shape, tissue, downsample=downsample, tile=tile, overlap=overlap)
    records = [TileRecord(t.index, t.window, t.core, share) for t, share in zip(tiles, shares)]
    todo = [k for k, share in enumerate(shares) if share > 0]
    result = TwoSpeedResult(records, normalization)
    if normalization.is_degenerate:
        result.messages.append("the image is constant or has no finite values: nothing to segment")
        return result

    start = clock()
    watch = Stopwatch(len(todo))
    for n, k in enumerate(todo):
        if cancel is not None and cancel.cancelled:
            result.cancelled = True
            break
        t = tiles[k]
        probability = _core(_h_probability(segmenter, _window_rgb(segmenter, image, layout, t, normalization,
                                                                   channels)), t)
        mask = (probability > 0.5).astype(np.uint8)
        sink.put("h", t.core, mask)
        sink.put("autosam", t.core, mask)
        records[k].source, records[k].uncertainty = "h", uncertainty(probability)
        records[k].foreground = int(np.count_nonzero(mask))
        yield watch.event("h", n + 1, f"h(g(I)) {n + 1}/{len(todo)} tissue tiles")
    result.h_seconds = clock() - start
    if result.cancelled:
        return result
    yield from _sam_pass(segmenter, image, layout, tiles, records, sink, plan, normalization, channels, cancel,
                         clock, result)
    return result


def _sam_pass(segmenter, image, layout, tiles, records, sink, plan: SamPlan, normalization, channels,
              cancel, clock, result: TwoSpeedResult) -> Task[None]:
    """AutoSAM on the ranked tissue tiles until the plan, the budget or a cancel says stop."""
    ranked = sorted((r for r in records if r.source == "h"), key=lambda r: -(r.uncertainty or 0.0))
    chosen = ranked[: plan.wanted(len(ranked))]
    start = clock()
    watch = Stopwatch(len(chosen))
    for n, record in enumerate(chosen):
        elapsed = clock() - start
        if cancel is not None and cancel.cancelled:
            result.stopped, result.cancelled = "cancelled", True
            break
        per_tile = elapsed / n if n else 0.0
        if plan.seconds is not None and elapsed + per_tile > plan.seconds:
            result.stopped = "budget"
            break
        t = tiles[record.index]
        rgb = _window_rgb(segmenter, image, layout, t, normalization, channels)
        probability = yield from _sam_probability(segmenter, rgb)
        mask = (_core(probability, t) > 0.5).astype(np.uint8)
        sink.put("autosam", t.core, mask)
        record.source, record.foreground = "sam", int(np.count_nonzero(mask))
        yield watch.event("sam", n + 1, f"SAM {n + 1}/{len(chosen)} tiles")
    result.sam_seconds = clock() - start
    if result.stopped == "budget":
        result.messages.append(f"SAM budget reached after {result.count('sam')} of {len(chosen)} tiles; "
                               "the other tiles keep h(g(I))")
