"""Where a training run writes its model, and what the checkpoint records about the run.

Training never overwrites a model: the result is the next numbered version
of a :class:`~napari_autosam.models.store.ModelStore` (reserved before the
first step, so two runs never collide), or a new ``.safetensors`` file that
must not exist yet.  The file is written atomically.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..losses import PROBABILITY_GAIN_KEY
from ..models.checkpoint import ModelCheckpoint, read_metadata, save_checkpoint
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

            store = ModelStore(model_store_dir(sam))
        version, path = store.reserve()
        return cls(path, store, version)

    def release(self) -> None:
        if self.store is not None and self.version is not None:
            self.store.release(self.version)


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


def _metrics(info: dict) -> dict:
    history = info["history"]
    metrics = dict(info.get("final") or {})
    if history:
        metrics["initial_val_dice_autosam"] = history[0]["val_dice_autosam"]
        metrics["initial_val_dice_h"] = history[0]["val_dice_h"]
    for stage, (epoch, step) in info["best"].items():
        metrics[f"best_epoch_{stage}"] = epoch
        metrics[f"best_step_{stage}"] = step
    metrics["val_kind"] = info["val_kind"]
    metrics["training_seconds"] = info["seconds"]
    return metrics


def write_model(destination: Destination, model, info: dict) -> tuple[ModelCheckpoint, Path, str | None]:
    """Save g and h of ``model`` (an AutoSAM) with the run's metadata; activate a store version.

    A cancelled run's version is activated only when it improved on the
    starting model (a best epoch after 0 in some stage).
    """
    from ..sam.cache import sam_fingerprint
    from ..sam.registry import sam_identity

    sam, config = info["sam"], info["config"]
    identity = sam_identity(sam)
    improved = any(step > 0 for _, step in info["best"].values())
    meta = {
        "sam_fingerprint": sam_fingerprint(sam),
        "sam_checkpoint": str(identity.checkpoint_path) if identity.checkpoint_path else None,
        "sam_name": identity.name,  # a domain SAM's name (vit_b_histopathology): what later runs load by default
        "trained_on": [{"name": s.name, "sha1": s.key} for s in info["train"]],
        "trained_on_count": len(info["train"]),
        "validated_on": [{"name": s.name, "sha1": s.key} for s in info["val"]],
        "validation": info["val_note"],
        "validation_kind": info["val_kind"],
        "parent": _parent(info["parent"]),
        "metrics": _metrics(info),
        "training": config.to_dict(),
        "ended": info["ended"],
        "cancelled": info["cancelled"],
        "normalization": _recipe(info["train"]),
        "history": info["history"],
        "version": destination.version,
        "resolution": config.resolution if config.resolution is not None else (info["parent"] or {}).get("resolution"),
        PROBABILITY_GAIN_KEY: float(info.get("probability_gain", 1.0)),
    }
    heads, classes = getattr(model, "class_heads", None), info.get("classes")
    if heads is not None:
        meta["classes"] = classes.to_metadata()
    save_checkpoint(destination.path, model.prompt_generator, model.surrogate,
                    sam_variant=identity.variant, adapters=getattr(model, "adapters", None), class_heads=heads,
                    **meta)
    if destination.store is not None and (improved or not info["cancelled"]):
        destination.store.activate(destination.version)
    checkpoint = ModelCheckpoint(model.prompt_generator.eval(), model.surrogate.eval(), read_metadata(destination.path),
                                 class_heads=heads.eval() if heads is not None else None)
    return checkpoint, destination.path, destination.version
