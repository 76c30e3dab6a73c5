"""Segmentation with a class model: one class label image (0 background, 1..K) from AutoSAM and from h.

The fused label logits of each window (:mod:`napari_autosam.models.multiclass`)
are mapped back to the window, turned into class probabilities (softmax
over K+1), blended across overlapping tiles with the tiling's weights (the
one tiling rule, :mod:`.tiling`) and the class of each pixel is the most
probable one.  The binary outputs of a class model (masks, instances,
agreement) use the foreground probability ``1 - P(background)``
(:func:`foreground_probabilities`, which :class:`~.segmenter.Segmenter`
calls), so everything made for one class keeps working; instances get the
class most of their pixels have (:func:`instance_classes`).

Class probabilities are held per plane in memory (``(K+1)×H×W`` float32):
this is for images up to a few thousand pixels a side, not whole slides.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from ..class_sets import ClassSet, classes_from_metadata
from ..device import autocast
from ..models.logits import to_probabilities
from ..models.multiclass import class_forward
from ..progress import CancelToken, Stopwatch, Task
from ..sam.embedding import Geometry
from .inputs import image_layout
from .tiling import DEFAULT_OVERLAP, segmentation_tiles
from .window_steps import as_image, g_input, read_windows, whole_image_normalization


@dataclass
class ClassSegmentation:
    """Class label images of one image.

    labels : ``(Z,)Y×X`` uint8 class ids from AutoSAM's fused map (None for a preview)
    h_labels : ``(Z,)Y×X`` uint8 class ids from h's fused map (None without h)
    classes : the model's classes
    fractions : share of the pixels of each class 1..K in ``labels`` (or ``h_labels`` for a preview)
    cancelled : True when cancelled (the labels so far are returned)
    """

    labels: np.ndarray | None
    h_labels: np.ndarray | None
    classes: ClassSet
    fractions: list[float]
    cancelled: bool = False


def model_classes(segmenter) -> ClassSet | None:
    """The classes of the segmenter's model, or None for a binary model."""
    if getattr(segmenter.checkpoint, "class_heads", None) is None:
        return None
    return classes_from_metadata(segmenter.checkpoint.metadata, "the model")


@torch.inference_mode()
def window_class_probabilities(segmenter, rgbs: list[np.ndarray], embeddings: torch.Tensor | None):
    """``[(autosam (K+1)×h×w or None, h (K+1)×h×w or None)]`` class probabilities of RGB windows."""
    heads = segmenter.checkpoint.class_heads.to(segmenter.device).eval()
    model = segmenter.model
    inputs = g_input(model, rgbs, segmenter.device)
    with autocast(segmenter.device):
        out = class_forward(model, heads, inputs, None if embeddings is None else embeddings.to(segmenter.device),
                            with_surrogate=model.surrogate is not None)

    def probs(fused, i, geometry):
        return None if fused is None else to_probabilities(fused[i : i + 1], geometry)[0].cpu().numpy()

    results = []
    for i, rgb in enumerate(rgbs):
        geometry = Geometry(*rgb.shape[:2])
        results.append((probs(out.fused, i, geometry), probs(out.h_fused, i, geometry)))
    return results


def foreground_probabilities(segmenter, rgbs: list[np.ndarray], embeddings: torch.Tensor | None):
    """``(list of (autosam fg, h fg), ious)`` like the binary segmenter's: ``1 - P(background)``."""
    pairs = window_class_probabilities(segmenter, rgbs, embeddings)
    fg = [(None if a is None else 1 - a[0], None if h is None else 1 - h[0]) for a, h in pairs]
    return fg, [None] * len(rgbs)


def segment_classes(segmenter, image, *, channel_axis: int | None = None, channels=None, tile: int | None = None,
                    overlap: int = DEFAULT_OVERLAP, normalization=None, stack: bool | None = None,
                    preview: bool = False, cancel: CancelToken | None = None) -> Task[ClassSegmentation]:
    """Class label images of a 2D image or a stack (per slice); a generator of ``segment`` progress.

    Arguments as for :meth:`~.segmenter.Segmenter.segment`; ``preview``: h only, no SAM.
    Raises ValueError for a binary model.
    """
    classes = model_classes(segmenter)
    if classes is None:
        raise ValueError("this model has no classes (a binary model): it writes masks, not class labels")
    image = as_image(image)
    layout = image_layout(image, channel_axis, stack=stack)
    if normalization is None:
        normalization = whole_image_normalization(image, layout, channels)
    height, width = layout.plane_shape
    tiles = segmentation_tiles((height, width), tile, overlap)
    k1 = len(classes) + 1
    with_h = segmenter.model.surrogate is not None
    labels = None if preview else np.zeros(layout.output_shape, np.uint8)
    h_labels = np.zeros(layout.output_shape, np.uint8) if with_h else None
    clock = Stopwatch(layout.n_planes * len(tiles))
    done, cancelled = 0, False
    for z in range(layout.n_planes):
        sums = [np.zeros((k1, height, width), np.float32) for _ in range(2)]
        weights = np.zeros((height, width), np.float32)
        for t in tiles:
            if cancel is not None and cancel.cancelled:
                cancelled = True
                break
            rgb, = read_windows(image, layout, [(z, t)], normalization, channels)
            embeddings = None if preview else (yield from segmenter.embed_windows([rgb], len(tiles) == 1))
            (autosam, h), = window_class_probabilities(segmenter, [rgb], embeddings)
            w = t.weight()
            for acc, prob in zip(sums, (autosam, h)):
                if prob is not None:
                    acc[(slice(None), *t.slices)] += prob * w
            weights[t.slices] += w
            done += 1
            yield clock.event("segment", done, f"classes: {done}/{clock.total} windows")
        where = (z,) if layout.is_stack else ()
        if labels is not None:
            labels[where] = sums[0].argmax(0)
        if h_labels is not None:
            h_labels[where] = sums[1].argmax(0)
        if cancelled:
            break
    shown = labels if labels is not None else h_labels
    fractions = [float(np.mean(shown == c.id)) for c in classes] if shown is not None else []
    return ClassSegmentation(labels, h_labels, classes, fractions, cancelled)


def instance_classes(instances: np.ndarray, labels: np.ndarray) -> dict[int, int]:
    """The class (majority of its pixels, background excluded when any class is there) of each instance."""
    instances, labels = np.asarray(instances), np.asarray(labels)
    found: dict[int, int] = {}
    ids = instances.ravel()
    classes = labels.ravel()
    keep = ids > 0
    if not keep.any():
        return found
    n_classes = int(classes.max()) + 1
    counts = np.zeros((int(ids.max()) + 1, n_classes), np.int64)
    np.add.at(counts, (ids[keep], classes[keep]), 1)
    for label in np.unique(ids[keep]):
        row = counts[label].copy()
        if row[1:].any():
            row[0] = 0
        found[int(label)] = int(row.argmax())
    return found


def with_class_labels(segmenter, task: Task, image, **options) -> Task:
    """Run a segmentation ``task`` and, for a class model, put class ids in its AutoSAM and h masks.

    ``image`` is what ``task`` segments (the plane, region or stack) and
    ``options`` go to :func:`segment_classes` (``channel_axis``, ``tile``,
    ``stack``, ``preview``, ``cancel``…); the whole-image normalization of the
    first pass is reused, and so are its cached SAM embeddings where the
    segmenter's cache kept them.  A binary model's result is returned as it
    is, so callers need not ask which kind of model they have.
    """
    result = yield from task
    if model_classes(segmenter) is None or result.cancelled:
        return result
    found = yield from segment_classes(segmenter, image, normalization=result.normalization, **options)
    return replace(result, autosam_mask=result.autosam_mask if found.labels is None else found.labels,
                   h_mask=result.h_mask if found.h_labels is None else found.h_labels)
