"""Where a training run writes its model, and what the checkpoint records about the run.

Training never overwrites a model: the result is the next numbered version
of a :class:`~napari_autosam.models.store.ModelStore` (reserved before the
first step, so two runs never collide), or a new ``.safetensors`` file that
must not exist yet.  The file is written atomically.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..models.checkpoint import ModelCheckpoint, RunRecord, read_metadata, save_checkpoint
from ..models.store import ModelStore


@dataclass
class Destination:
    """A reserved place for the trained model: a store version or a new file."""

    path: Path
    store: ModelStore | None = None
    version: str | None = None

    @classmethod
    def open(cls, store: ModelStore | None, out: str | os.PathLike | None, sam=None) -> Destination:
        """Check ``out``/``store`` and reserve the output before any compute.

        ``out`` ending in ``.safetensors`` is a file that must not exist;
        any other ``out`` is a model-store folder (created when missing);
        with neither, the default store of ``sam``
        (:func:`napari_autosam.paths.model_store_dir`, the one the widget lists).
        """
        if store is not None and out is not None:
            raise ValueError("give either store= or out=, not both")
        if out is not None:
            out = Path(out).expanduser()
            if out.suffix == ".safetensors":
                if out.exists():
                    raise ValueError(f"{out} already exists; training never overwrites a model "
                                     "(choose a new file name, or a model-store folder)")
                return cls(out)
            if out.exists() and not out.is_dir():
                raise ValueError(f"{out} exists and is not a folder; --out takes a model-store folder "
                                 "or a new .safetensors file")
            store = ModelStore(out)
        if store is None:
            from ..paths import model_store_dir
            from ..sam.registry import identity_of

            store = ModelStore(model_store_dir(identity_of(sam)))
        version, path = store.reserve()
        return cls(path, store, version)

    def release(self) -> None:
        if self.store is not None and self.version is not None:
            self.store.release(self.version)


@dataclass
class TrainingRun:
    """How a training run went, as :func:`write_model` records it (:class:`~napari_autosam.models.checkpoint.RunRecord`).

    sam : the frozen SAM trained with; config : the resolved TrainConfig
    train, val : the training and validation samples (or volumes); val_note, val_kind : how validation was done
    ended : how each stage ended; best : ``{stage: (epoch, step)}`` of the kept state
    history : one dict per validation; final : the last validation's figures; seconds : training time
    parent : the starting model's metadata ({} for a new model); cancelled : the run was cancelled
    classes : a class model's ClassSet, else None; probability_gain : the logit gain g was trained under
    """

    sam: Any
    config: Any
    train: list
    val: list
    val_note: str
    val_kind: str
    ended: dict
    best: dict
    history: list[dict]
    final: dict = field(default_factory=dict)
    seconds: float = 0.0
    parent: dict = field(default_factory=dict)
    cancelled: bool = False
    classes: Any = None
    probability_gain: float = 1.0


def _recipe(samples) -> dict | None:
    """The most common normalisation settings of the training images (for inference to repeat)."""
    recipes = Counter(
        (tuple(s.normalization.percentiles), s.normalization.channels) for s in samples if s.normalization is not None
    )
    if not recipes:
        return None
    (percentiles, channels), _ = recipes.most_common(1)[0]
    return {"percentiles": list(percentiles), "channels": None if channels is None else list(channels)}


def _parent(meta: dict) -> str | None:
    if not meta:
        return None
    if meta.get("path"):
        return str(meta["path"])
    if meta.get("version"):
        return str(meta["version"])
    return f"model created {meta['created']}" if meta.get("created") else "an in-memory model"


def _metrics(run: TrainingRun) -> dict:
    metrics = dict(run.final or {})
    if run.history:
        metrics["initial_val_dice_autosam"] = run.history[0]["val_dice_autosam"]
        metrics["initial_val_dice_h"] = run.history[0]["val_dice_h"]
    for stage, (epoch, step) in run.best.items():
        metrics[f"best_epoch_{stage}"] = epoch
        metrics[f"best_step_{stage}"] = step
    metrics["val_kind"] = run.val_kind
    metrics["training_seconds"] = run.seconds
    return metrics


def run_record(run: TrainingRun, version: str | None, classes: list | None = None) -> RunRecord:
    """The metadata a run writes into its model."""
    from ..sam.cache import sam_fingerprint
    from ..sam.registry import sam_identity

    identity = sam_identity(run.sam)
    config = run.config
    return RunRecord(
        sam_fingerprint=sam_fingerprint(run.sam),
        sam_checkpoint=str(identity.checkpoint_path) if identity.checkpoint_path else None,
        trained_on=[{"name": s.name, "sha1": s.key} for s in run.train],
        validated_on=[{"name": s.name, "sha1": s.key} for s in run.val],
        validation=run.val_note,
        validation_kind=run.val_kind,
        parent=_parent(run.parent),
        metrics=_metrics(run),
        training=config.to_dict(),
        ended=run.ended,
        cancelled=run.cancelled,
        normalization=_recipe(run.train),
        history=run.history,
        version=version,
        resolution=config.resolution if config.resolution is not None else (run.parent or {}).get("resolution"),
        probability_gain=float(run.probability_gain),
        classes=classes,
    )


def write_model(destination: Destination, model, run: TrainingRun) -> tuple[ModelCheckpoint, Path, str | None]:
    """Save g and h of ``model`` (an AutoSAM) with the run's metadata; activate a store version.

    A cancelled run's version is activated only when it improved on the
    starting model (a best epoch after 0 in some stage).
    """
    from ..sam.registry import sam_identity

    improved = any(step > 0 for _, step in run.best.values())
    heads = getattr(model, "class_heads", None)
    record = run_record(run, destination.version, run.classes.to_metadata() if heads is not None else None)
    save_checkpoint(destination.path, model.prompt_generator, model.surrogate,
                    sam_variant=sam_identity(run.sam).variant, adapters=getattr(model, "adapters", None),
                    class_heads=heads, **record.to_metadata())
    if destination.store is not None and (improved or not run.cancelled):
        destination.store.activate(destination.version)
    checkpoint = ModelCheckpoint(model.prompt_generator.eval(), model.surrogate.eval(), read_metadata(destination.path),
                                 class_heads=heads.eval() if heads is not None else None)
    return checkpoint, destination.path, destination.version
