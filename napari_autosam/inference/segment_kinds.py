"""The model kinds the segmenter knows, registered: how each turns windows into probabilities.

A kind (:attr:`~napari_autosam.models.checkpoint.ModelCheckpoint.kind`) is
``"binary"`` (g and h), ``"classes"`` (a class model: its binary outputs are
``1 - P(background)``, :mod:`.class_labels`) or ``"depth"`` (depth adapters in
SAM's encoder: a stack goes through windows of neighbouring slices,
:mod:`.depth_segment`; a single plane or a preview takes the binary path).
:class:`~.segmenter.Segmenter` looks its model's kind up here instead of
asking which modules the model has.  The training side has its own table
(:mod:`napari_autosam.training.train_kinds`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .class_labels import foreground_probabilities
from .depth_segment import segment_stack
from .window_steps import binary_window_probabilities


@dataclass(frozen=True)
class SegmentKind:
    """What segmentation does for one kind of model.

    window_probabilities : ``(segmenter, rgbs, embeddings or None) -> ([(autosam, h)], ious)``, the
        probabilities of a batch of RGB windows (embeddings None: a preview, h only)
    segment_stack : a whole stack at once (``segment_stack(segmenter, image, layout, ...)``), or None: slice by slice
    """

    name: str
    window_probabilities: Callable
    segment_stack: Callable | None = None


SEGMENT_KINDS: dict[str, SegmentKind] = {}


def register_segment_kind(kind: SegmentKind) -> SegmentKind:
    """Add (or replace) a kind in :data:`SEGMENT_KINDS`."""
    SEGMENT_KINDS[kind.name] = kind
    return kind


def segment_kind(name: str) -> SegmentKind:
    """The registered kind ``name`` (a ValueError names the known ones)."""
    try:
        return SEGMENT_KINDS[name]
    except KeyError:
        raise ValueError(f"no segmentation for model kind {name!r}; known: {sorted(SEGMENT_KINDS)}") from None


def _binary_probabilities(segmenter, rgbs, embeddings):
    return binary_window_probabilities(segmenter.model, rgbs, embeddings, gain=segmenter.probability_gain,
                                       device=segmenter.device)


register_segment_kind(SegmentKind("binary", _binary_probabilities))
register_segment_kind(SegmentKind("classes", foreground_probabilities))
register_segment_kind(SegmentKind("depth", _binary_probabilities, segment_stack))
