"""Self-prompted instances (Self-Prompt-SAM, docs/method.md) from an auxiliary mask.

1. :func:`split_objects`: the binary auxiliary mask (h(g(I)) or the AutoSAM
   mask) becomes one label per object; touching objects, merged in the
   binary mask, are split by a watershed of the distance transform seeded
   at its peaks, so each gets its own prompt.
2. :func:`object_prompts`: per object its bounding box, the point farthest
   from its boundary (argmax of its Euclidean distance transform; unlike the
   box centre it always lies inside), and its mask.
3. :func:`prompt_instances`: the prompts go through SAM's prompt encoder and
   mask decoder in batches on the image's cached embedding.  SAM's mask
   replaces the auxiliary object unless the two barely overlap (IoU below
   ``min_agreement``: SAM picked something else, e.g. the background of the
   box), in which case the auxiliary object is kept.
4. :func:`paste_instances`: objects are written best score first onto free
   pixels only; objects left smaller than ``min_size`` or mostly covered by
   better ones (duplicates) are dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..sam.embedding import Geometry
from .prompts import boxes_to_sam, decode, logit_region, logits_in_window, mask_prompt, points_to_sam


def _ndi():
    """scipy.ndimage, imported on first use: a semantic-only run never needs it."""
    from scipy import ndimage

    return ndimage


@dataclass(frozen=True)
class InstanceOptions:
    """Settings of the self-prompted instance segmentation.

    Attributes
    ----------
    source : "autosam" or "h"
        Which mask the prompts are derived from (falls back to "autosam" without h).
    refine : bool
        Send the prompts through SAM (Self-Prompt-SAM).  False keeps the split
        auxiliary objects as they are: no decoder calls (about 0.1 s per object
        on a CPU), for a quick look or a poor SAM.
    use_mask_prompt : bool
        Also send each object's mask as SAM's mask prompt (as logits ±10).
        Off by default: the frozen SAM was trained with its own logits there.
    min_size : int
        Objects with fewer pixels are dropped (before and after SAM).
    split_depth : float
        How far (in pixels) a peak of the smoothed distance transform must
        rise above the saddle to its neighbour to seed an object of its own.
        0.5 splits touching nuclei of radius 6-40 px on synthetic data
        without cutting single ones; raise it if objects are over-split.
    min_agreement : float
        IoU between SAM's mask and the auxiliary object below which the
        auxiliary object is kept instead.
    max_overlap : float
        An object whose pixels are more than this fraction already taken by
        better objects is a duplicate and is dropped.
    batch_size : int
        Prompts per call of SAM's mask decoder (64, as SAM's own grid generator).
    min_confidence : float
        Objects whose mean probability is below this never become prompts
        (nor instances): an untrained or poorly trained g falls apart into
        many faint pieces just above 0.5, each of which would cost a decoder
        pass.  0 keeps every object.
    max_prompts : int or None
        At most this many objects per window go through SAM's decoder, those
        with the most probability mass first; the others are kept as split
        auxiliary objects (as with ``refine=False``) and the result's
        messages say so.  512 bounds the decoder work of one tile to half of
        what SAM's grid generator spends on it (32×32 points).  None: no cap.
    """

    source: str = "autosam"
    refine: bool = True
    use_mask_prompt: bool = False
    min_size: int = 12
    split_depth: float = 0.5
    min_agreement: float = 0.3
    max_overlap: float = 0.5
    batch_size: int = 64
    min_confidence: float = 0.6
    max_prompts: int | None = 512

    def __post_init__(self) -> None:
        if self.source not in ("autosam", "h"):
            raise ValueError(f"instance source must be 'autosam' or 'h', got {self.source!r}")
        if self.max_prompts is not None and self.max_prompts < 0:
            raise ValueError(f"max_prompts must be None or >= 0, got {self.max_prompts!r}")
        if not 0 <= self.min_confidence < 1:
            raise ValueError(f"min_confidence must be in [0, 1), got {self.min_confidence!r}")


@dataclass
class Instance:
    """One object in a plane: its mask inside ``window = (y0, y1, x0, x1)`` and a score."""

    window: tuple[int, int, int, int]
    mask: np.ndarray  # bool, window-shaped
    score: float

    @property
    def area(self) -> int:
        return int(self.mask.sum())


def _markers(distance: np.ndarray, depth: float) -> np.ndarray:
    """Labelled regional maxima of ``distance`` that rise at least ``depth`` above their surroundings."""
    from skimage.morphology import h_maxima

    peaks = h_maxima(distance, depth) > 0
    return _ndi().label(peaks, structure=np.ones((3, 3)))[0]


def split_objects(mask: np.ndarray, *, min_size: int = 12, split_depth: float = 0.5) -> np.ndarray:
    """One label per object of a binary mask, touching objects split.

    Parameters
    ----------
    mask : H×W bool (anything > 0 is foreground).

    Returns
    -------
    H×W int32 labels 1..N (0 background); components smaller than ``min_size`` dropped.
    """
    from skimage.segmentation import watershed

    mask = np.asarray(mask) > 0
    components, count = _ndi().label(mask)
    if count == 0:
        return np.zeros(mask.shape, np.int32)
    # Smoothing keeps the boundary's pixel steps from making peaks of their own.
    distance = _ndi().gaussian_filter(_ndi().distance_transform_edt(mask), 1.0) * mask
    markers = _markers(distance, split_depth)
    # A component without a peak deep enough keeps one seed of its own.
    seeded = np.unique(components[markers > 0])
    unseeded = np.isin(components, seeded, invert=True) & mask
    markers[unseeded] = components[unseeded] + markers.max()
    labels = watershed(-distance, markers, mask=mask)
    return _relabel(labels, min_size)


def _relabel(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Drop labels smaller than ``min_size`` and number the rest 1..N."""
    sizes = np.bincount(labels.ravel())
    keep = sizes >= max(1, min_size)
    keep[0] = False
    lut = np.zeros(len(sizes), np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1)
    return lut[labels]


@dataclass
class ObjectPrompts:
    """SAM prompts for ``N`` objects, in image pixels.

    boxes : N×4 float ``(x0, y0, x1, y1)`` (inclusive pixel bounds, as SAM's own mask-to-box)
    points : N×2 float ``(x, y)``, each object's point farthest from its boundary
    masks : list of N boolean object masks inside their ``windows``
    windows : list of N ``(y0, y1, x0, x1)`` bounding windows
    """

    boxes: np.ndarray
    points: np.ndarray
    masks: list[np.ndarray]
    windows: list[tuple[int, int, int, int]]

    def __len__(self) -> int:
        return len(self.windows)


def object_prompts(labels: np.ndarray, keep: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> ObjectPrompts:
    """Box, innermost point and mask of every labelled object.

    ``keep(y, x)``, given the innermost points, says which objects to keep
    (e.g. those whose point lies in a tile's core).
    """
    boxes, points, masks, windows = [], [], [], []
    for index, found in enumerate(_ndi().find_objects(labels), start=1):
        if found is None:
            continue
        ys, xs = found
        obj = labels[found] == index
        inner = _ndi().distance_transform_edt(np.pad(obj, 1))[1:-1, 1:-1]
        py, px = np.unravel_index(int(np.argmax(inner)), inner.shape)
        boxes.append((xs.start, ys.start, xs.stop - 1, ys.stop - 1))
        points.append((xs.start + px, ys.start + py))
        masks.append(obj)
        windows.append((ys.start, ys.stop, xs.start, xs.stop))
    prompts = ObjectPrompts(np.array(boxes, float).reshape(-1, 4), np.array(points, float).reshape(-1, 2), masks, windows)
    if keep is not None and len(prompts):
        chosen = np.flatnonzero(keep(prompts.points[:, 1], prompts.points[:, 0]))
        prompts = ObjectPrompts(prompts.boxes[chosen], prompts.points[chosen],
                                [masks[i] for i in chosen], [windows[i] for i in chosen])
    return prompts


def _grown(window: tuple[int, int, int, int], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """The window enlarged by half its size (at least 8 px) on every side, inside the image."""
    y0, y1, x0, x1 = window
    my, mx = max(8, (y1 - y0) // 2), max(8, (x1 - x0) // 2)
    return max(0, y0 - my), min(shape[0], y1 + my), max(0, x0 - mx), min(shape[1], x1 + mx)


def _embed_in(mask: np.ndarray, inner: tuple[int, int, int, int], outer: tuple[int, int, int, int]) -> np.ndarray:
    """A mask of window ``inner`` placed in the larger window ``outer``."""
    out = np.zeros((outer[1] - outer[0], outer[3] - outer[2]), bool)
    out[inner[0] - outer[0] : inner[1] - outer[0], inner[2] - outer[2] : inner[3] - outer[2]] = mask
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def prompt_instances(
    sam,
    embedding: torch.Tensor,
    prompts: ObjectPrompts,
    geometry: Geometry,
    options: InstanceOptions = InstanceOptions(),
) -> list[Instance]:
    """SAM's mask for every object prompt (box + innermost point [+ mask]), in batches.

    Without ``options.refine`` the auxiliary objects are returned unchanged.

    ``embedding`` is the plane's ``1×256×64×64`` SAM embedding and
    ``geometry`` its size; results are in the plane's pixels.
    """
    shape = (geometry.height, geometry.width)
    if not options.refine:
        return [Instance(w, m, 0.0) for w, m in zip(prompts.windows, prompts.masks)]
    windows = [_grown(window, shape) for window in prompts.windows]
    regions = np.array([logit_region(geometry, window) for window in windows], dtype=np.int64).reshape(-1, 4)
    # SAM's mask is read only inside each object's grown window, so only the logits there are
    # computed; batches of similar sizes keep those crops small (results keep the prompts' order).
    order = np.argsort(-(regions[:, 1] - regions[:, 0]) * (regions[:, 3] - regions[:, 2]), kind="stable")
    instances: list[Instance | None] = [None] * len(prompts)
    for start in range(0, len(prompts), options.batch_size):
        chunk = order[start : start + options.batch_size]
        points = points_to_sam(prompts.points[chunk, None, :], geometry)
        masks = None
        if options.use_mask_prompt:
            masks = mask_prompt(np.stack([_embed_in(prompts.masks[i], prompts.windows[i], (0, shape[0], 0, shape[1]))
                                          for i in chunk]))
        logits, scores = decode(
            sam, embedding, points=(points, np.ones(points.shape[:2])),
            boxes=boxes_to_sam(prompts.boxes[chunk], geometry), masks=masks, regions=regions[chunk],
        )
        for k, i in enumerate(chunk):
            window = windows[i]
            aux = _embed_in(prompts.masks[i], prompts.windows[i], window)
            sam_mask = (logits_in_window(logits[k], geometry, window) > 0).numpy()
            if _iou(sam_mask, aux) >= options.min_agreement:
                instances[i] = Instance(window, sam_mask, float(scores[k, 0]))
            else:
                instances[i] = Instance(window, aux, 0.0)
    return instances


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = _ndi().label(mask)
    if count <= 1:
        return mask
    return labels == (np.argmax(np.bincount(labels.ravel())[1:]) + 1)


def paste_instances(
    labels: np.ndarray, instances: list[Instance], next_id: int, options: InstanceOptions = InstanceOptions()
) -> int:
    """Write ``instances`` into ``labels`` (in place), best score first, onto free pixels only.

    Each object keeps its largest connected piece of free pixels; it is
    dropped when that is smaller than ``min_size`` or when more than
    ``max_overlap`` of it was already taken.  Returns the next free label.
    """
    for inst in sorted(instances, key=lambda i: -i.score):
        area = inst.area
        if area < options.min_size:
            continue
        y0, y1, x0, x1 = inst.window
        view = labels[y0:y1, x0:x1]
        free = _largest_component(inst.mask & (view == 0))
        kept = int(free.sum())
        if kept < options.min_size or kept < (1 - options.max_overlap) * area:
            continue
        view[free] = next_id
        next_id += 1
    return next_id


# --- one window, with the decoder work bounded --------------------------------------------------


def confident_objects(labels: np.ndarray, prob: np.ndarray, min_confidence: float) -> np.ndarray:
    """``labels`` without the objects whose mean probability is below ``min_confidence`` (renumbered 1..N)."""
    if min_confidence <= 0 or not labels.any():
        return labels
    counts = np.bincount(labels.ravel())
    sums = np.bincount(labels.ravel(), weights=np.asarray(prob, np.float64).ravel(), minlength=len(counts))
    confident = sums >= min_confidence * np.maximum(counts, 1)
    confident[0] = False
    lut = np.zeros(len(counts), np.int32)
    lut[confident] = np.arange(1, int(confident.sum()) + 1)
    return lut[labels]


def _subset(prompts: ObjectPrompts, chosen: np.ndarray) -> ObjectPrompts:
    return ObjectPrompts(prompts.boxes[chosen], prompts.points[chosen],
                         [prompts.masks[i] for i in chosen], [prompts.windows[i] for i in chosen])


def cap_prompts(prompts: ObjectPrompts, prob: np.ndarray, limit: int | None) -> tuple[ObjectPrompts, ObjectPrompts]:
    """``(refined, kept)``: the ``limit`` objects with the most probability mass, and the rest."""
    if limit is None or len(prompts) <= limit:
        return prompts, _subset(prompts, np.arange(0))
    mass = np.array([float(prob[y0:y1, x0:x1][m].sum()) for (y0, y1, x0, x1), m in zip(prompts.windows, prompts.masks)])
    order = np.argsort(-mass, kind="stable")
    return _subset(prompts, np.sort(order[:limit])), _subset(prompts, np.sort(order[limit:]))


def window_instances(
    sam,
    embedding: torch.Tensor,
    prob: np.ndarray,
    options: InstanceOptions = InstanceOptions(),
    keep: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[list[Instance], str | None]:
    """Instances of one window's ``H×W`` probability map, with the decoder work bounded.

    Split the mask ``prob > 0.5``, drop objects below ``min_size`` or
    ``min_confidence``, keep those whose inner point passes ``keep`` (a
    tile's core), send at most ``max_prompts`` of them through SAM and keep
    the rest unrefined.  Returns the instances and a note when the cap was hit.
    """
    objects = split_objects(prob > 0.5, min_size=options.min_size, split_depth=options.split_depth)
    objects = confident_objects(objects, prob, options.min_confidence)
    prompts = object_prompts(objects, keep=keep)
    if not len(prompts):
        return [], None
    geometry = Geometry(*prob.shape)
    refined, rest = cap_prompts(prompts, prob, options.max_prompts if options.refine else None)
    found = prompt_instances(sam, embedding, refined, geometry, options)
    note = None
    if len(rest):
        found += prompt_instances(sam, embedding, rest, geometry, replace(options, refine=False))
        note = (f"{len(prompts)} objects in one window: the {len(refined)} with the most probability mass were "
                f"refined by SAM, {len(rest)} kept as split (max_prompts={options.max_prompts})")
    return found, note


def capped_messages(notes: list[str]) -> list[str]:
    """The one line that says in how many windows the prompt cap was hit (``notes``: one per window), or none."""
    return [f"instances: SAM's prompts were capped in {len(notes)} window(s); {notes[0]}"] if notes else []
