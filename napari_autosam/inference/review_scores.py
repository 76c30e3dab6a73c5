"""Where to correct next: every tile of a slide (every slice of a stack) scored by how unsure the model is.

One segmentation gives three signals per region, all in [0, 1], higher
meaning less sure:

* **disagreement** ``1 − Dice(h(g(I)), AutoSAM)``: the surrogate h and SAM read the
  same prompt g(I); where they disagree, g has not settled (needs both; not in a preview);
* **uncertainty**: the share of the region's pixels whose probability lies
  between 0.25 and 0.75 (AutoSAM's and h's shares averaged): crisp objects on
  a clear background leave only their outlines there (a few per cent), a
  region the model hesitates over scores high;
* **SAM doubt** ``1 − predicted IoU``: the mask decoder's own estimate of its
  mask's quality for the tile (clipped to [0, 1]; not in a preview).

The score is the mean of the signals available.  Regions are the tiles'
*cores* (the tiles' non-overlapping parts, which partition the plane), so
a heat map of the scores covers the slide once; an image that fits in one
tile is one region per plane.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..losses import dice
from ..progress import Task
from .outputs import SegmentationResult
from .tiling import REVIEW_OVERLAP, REVIEW_TILE

#: Probabilities within this distance of 0.5 count as unsure.
BAND = 0.25


@dataclass(frozen=True)
class RegionScore:
    """One region's score.

    Attributes
    ----------
    z : slice (0 for a plane)
    region : ``(y0, y1, x0, x1)`` in the segmented image's pixels (a tile's core)
    score : the mean of the signals below that exist, in [0, 1]
    disagreement, uncertainty, sam_doubt : the signals (None where not available)
    """

    z: int
    region: tuple[int, int, int, int]
    score: float
    disagreement: float | None
    uncertainty: float
    sam_doubt: float | None


def uncertainty(prob: np.ndarray, band: float = BAND) -> float:
    """Share of the pixels with ``|p − 0.5| < band`` (0 for an empty region)."""
    prob = np.asarray(prob)
    return int(np.count_nonzero(np.abs(prob - 0.5) < band)) / prob.size if prob.size else 0.0


def _read(array, z: int, region, stack: bool) -> np.ndarray | None:
    if array is None:
        return None
    y0, y1, x0, x1 = region
    index = (z, slice(y0, y1), slice(x0, x1)) if stack else (slice(y0, y1), slice(x0, x1))
    return np.asarray(array[index])


def score_regions(result: SegmentationResult) -> list[RegionScore]:
    """Score every segmented window's core from a finished segmentation; highest score first.

    Reads each core once from the result's arrays (numpy or zarr); no model runs.
    """
    some = result.h_prob if result.h_prob is not None else result.autosam_prob
    stack = some is not None and len(some.shape) == 3
    scores = []
    for info in result.windows:
        autosam = _read(result.autosam_prob, info.z, info.core, stack)
        h = _read(result.h_prob, info.z, info.core, stack)
        disagreement = None if autosam is None or h is None else 1.0 - dice(autosam > 0.5, h > 0.5)
        unsure = float(np.mean([uncertainty(p) for p in (autosam, h) if p is not None]))
        doubt = None if info.predicted_iou is None else 1.0 - float(np.clip(info.predicted_iou, 0.0, 1.0))
        signals = [s for s in (disagreement, unsure, doubt) if s is not None]
        scores.append(RegionScore(info.z, info.core, float(np.mean(signals)), disagreement, unsure, doubt))
    return sorted(scores, key=lambda s: -s.score)


def review(segmenter, image, *, tile: int | None = REVIEW_TILE, overlap: int = REVIEW_OVERLAP, preview: bool = False,
           **kwargs) -> Task[tuple[list[RegionScore], SegmentationResult]]:
    """Segment ``image`` (tiled when larger than ``tile``) and score its regions; a generator of progress.

    Keywords go to :meth:`~napari_autosam.inference.Segmenter.segment` (``cancel``,
    ``channels``, ``store``, …).  A preview scores by the uncertainty of h alone.

    Returns ``(regions, result)``: the regions highest score first, and the
    segmentation (the caller owns ``result.store``).
    """
    result = yield from segmenter.segment(image, tile=tile, overlap=overlap, preview=preview, **kwargs)
    return score_regions(result), result


def heatmap(regions: list[RegionScore], plane_shape: tuple[int, int], *, z: int = 0,
            cell: int = 64) -> np.ndarray:
    """A coarse ``ceil(H/cell)×ceil(W/cell)`` float32 map of the scores of plane ``z``.

    Each cell takes the score of the region holding its centre (NaN where no
    region was scored, e.g. after a cancel).
    """
    height, width = plane_shape
    rows = (np.arange(-(-height // cell)) + 0.5) * cell
    cols = (np.arange(-(-width // cell)) + 0.5) * cell
    out = np.full((len(rows), len(cols)), np.nan, np.float32)
    for r in regions:
        if r.z != z:
            continue
        y0, y1, x0, x1 = r.region
        inside_y = (rows >= y0) & (rows < y1)
        inside_x = (cols >= x0) & (cols < x1)
        out[np.ix_(inside_y, inside_x)] = r.score
    return out


def write_review_csv(path: str | os.PathLike, regions: list[RegionScore], *, placement=None,
                     header: dict | None = None) -> Path:
    """``x,y,width,height,score`` (level-0 pixels) per region, highest score first, atomically.

    Further columns: ``slice``, ``disagreement``, ``uncertainty``, ``sam_doubt`` (empty
    where not available).  ``header`` items (e.g. the level and µm per pixel used)
    become ``# key: value`` lines above the column names.
    """
    from ..io.atomic import atomic_write_text
    from ..io.geojson import Placement

    placement = placement or Placement()
    d = placement.downsample
    ox, oy = placement.origin
    lines = [f"# {key}: {value}" for key, value in (header or {}).items()]
    lines.append("x,y,width,height,score,slice,disagreement,uncertainty,sam_doubt")

    def number(v) -> str:
        return "" if v is None else f"{v:.4f}"

    for r in regions:
        y0, y1, x0, x1 = r.region
        box = [ox + x0 * d, oy + y0 * d, (x1 - x0) * d, (y1 - y0) * d]
        cells = [f"{v:g}" for v in box] + [f"{r.score:.4f}", str(r.z)]
        lines.append(",".join(cells + [number(r.disagreement), number(r.uncertainty), number(r.sam_doubt)]))
    return atomic_write_text(path, "\n".join(lines) + "\n")
