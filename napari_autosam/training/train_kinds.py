"""The model kinds training knows, registered: each kind's training stage and its evaluation.

``"binary"`` and ``"classes"`` share the 2D image loop (:func:`.engine.train_images`;
a class model adds its heads and per-class scores, :mod:`.class_stage`);
``"depth"`` trains depth adapters on stacks (:mod:`.depth_stage`).  :func:`train`
and :func:`evaluate`, the public entry points, look the kind up here
instead of branching on it.  Segmentation has its own table
(:mod:`napari_autosam.inference.segment_kinds`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..device import pick_device
from ..models.checkpoint import ModelCheckpoint, load_checkpoint
from ..progress import CancelToken, Task
from .class_stage import evaluate_classes
from .config import TrainConfig
from .data import Sample
from .depth_stage import evaluate_depth, train_depth
from .engine import train_images
from .scoring import Evaluation, evaluate_binary
from .start import TrainResult


@dataclass(frozen=True)
class TrainKind:
    """What training does for one kind of model.

    train : ``(sam, samples, *, config, init, store, out, val_samples, cache, cancel, distributed) -> Task[TrainResult]``
    evaluate : ``(sam, model, samples, *, cache, cancel) -> Task[Evaluation]`` (a class model's: ``ClassEvaluation``)
    """

    name: str
    train: Callable
    evaluate: Callable


TRAIN_KINDS: dict[str, TrainKind] = {}


def register_train_kind(kind: TrainKind) -> TrainKind:
    """Add (or replace) a kind in :data:`TRAIN_KINDS`."""
    TRAIN_KINDS[kind.name] = kind
    return kind


def train_kind(name: str) -> TrainKind:
    """The registered kind ``name`` (a ValueError names the known ones)."""
    try:
        return TRAIN_KINDS[name]
    except KeyError:
        raise ValueError(f"no training for model kind {name!r}; known: {sorted(TRAIN_KINDS)}") from None


def config_kind(config: TrainConfig) -> str:
    """The kind a run of ``config`` trains: "depth" with depth adapters, "classes" with classes, else "binary".

    (A warm start from a class model trains its classes in the 2D loop, which the binary kind shares.)
    """
    if config.depth_adapters:
        return "depth"
    return "classes" if config.classes else "binary"


def _evaluate_depth(sam, model, samples, *, cache=None, cancel=None):
    return evaluate_depth(sam, model, samples, cancel=cancel)  # stacks: embeddings depend on the neighbours


register_train_kind(TrainKind("binary", train_images, evaluate_binary))
register_train_kind(TrainKind("classes", train_images, evaluate_classes))
register_train_kind(TrainKind("depth", train_depth, _evaluate_depth))


def train(
    sam,
    samples: Sequence[Sample],
    *,
    config: TrainConfig | None = None,
    init: ModelCheckpoint | str | os.PathLike | None = None,
    store=None,
    out: str | os.PathLike | None = None,
    val_samples: Sequence[Sample] | None = None,
    cache=None,
    cancel: CancelToken | None = None,
    distributed=None,
) -> Task[TrainResult]:
    """Fine-tune g (and h) on ``samples``; a generator of progress events returning a :class:`TrainResult`.

    Parameters
    ----------
    sam : segment_anything.modeling.Sam
        The frozen SAM (``load_sam``); its device is used unless ``config.device`` says otherwise.
    samples : list of Sample
        From :func:`load_samples` or :func:`samples_from_arrays`.
    config : TrainConfig
        Settings; None for the defaults.  Its kind (:func:`config_kind`) picks the training.
    init : ModelCheckpoint or path, optional
        Warm start (e.g. fine-tuning on corrections); it is copied, never modified.
    store : ModelStore, optional
        Write the result as its next version and activate it.
    out : path, optional
        Instead of ``store``: a ``.safetensors`` file that must not exist yet,
        or a model-store folder.  With neither, the default store
        of this SAM (:func:`napari_autosam.paths.model_store_dir`) is used.
    val_samples : list of Sample, optional
        Validation images; default: a seeded ``config.val_fraction`` split of
        three or more images, held-out strips (``config.val_strip``) of fewer.
    cache : EmbeddingCache, optional
        For the same SAM; with a disk directory, later runs skip encoding.
    cancel : CancelToken, optional
        Checked between steps; the best model so far is saved and returned.
    distributed : napari_autosam.distributed.sharded.ShardedRun, optional
        This process's share of a multi-process run (``torchrun``): it
        encodes and trains on its shard of every global batch, only the main
        process validates and writes the model.  None: one process does all.

    Yields ``Progress`` with phase ``"encode"``, ``"train_g"``, ``"train_h"``
    and metrics ``epoch``, ``loss``, ``val_dice_autosam``, ``val_dice_h`` and
    (at validations) ``val_kind``: ``"held-out strip"``, ``"held-out images"``,
    ``"given"`` or ``"training image"``.
    """
    config = config or TrainConfig()
    kind = train_kind(config_kind(config))
    return (yield from kind.train(sam, samples, config=config, init=init, store=store, out=out,
                                  val_samples=val_samples, cache=cache, cancel=cancel, distributed=distributed))


def evaluate(
    sam,
    model: ModelCheckpoint | str | os.PathLike,
    samples: Sequence[Sample],
    *,
    cache=None,
    cancel: CancelToken | None = None,
) -> Task[Evaluation]:
    """Score a trained (or untrained) model on ``samples`` as its kind does; a generator of ``evaluate`` progress.

    ``cache`` (an :class:`~napari_autosam.sam.cache.EmbeddingCache` for the
    same SAM) avoids re-encoding images seen before.  Raises
    :class:`~napari_autosam.progress.Cancelled` when cancelled.
    """
    if not isinstance(model, ModelCheckpoint):
        model = load_checkpoint(model, device=pick_device(next(sam.parameters()).device))
    return (yield from train_kind(model.kind).evaluate(sam, model, samples, cache=cache, cancel=cancel))
