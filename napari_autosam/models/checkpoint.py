"""Save and load the trained parts (g and h) with their metadata, safely.

Format: one safetensors file.  Tensors are stored as ``g.<name>`` and
``h.<name>``; the metadata (architecture, SAM variant, provenance) is a
JSON document under the ``napari_autosam`` key of the safetensors header.
Nothing is unpickled on load, so a checkpoint from anyone is safe to open.

The metadata stays a JSON object on disk (old checkpoints load as they are);
in code it is read through typed records: :class:`ModelInfo` (what a loaded
model says about itself, ``checkpoint.info``) and :class:`RunRecord` (what a
training run writes into it).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .. import __version__
from ..io.atomic import atomic_path

FORMAT = "napari-autosam/1"
META_KEY = "napari_autosam"
#: Largest g input side a checkpoint may ask for (a crafted file must not make us allocate gigabytes).
MAX_INPUT_SIZE = 4096
#: Largest width of a surrogate layer a checkpoint may ask for.
MAX_CHANNELS = 4096


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not fit the architecture it names."""


#: Metadata key of the gain on the decoder's logits that g was trained under (median of the last g
#: steps), so that AutoSAM's probabilities at inference are those the loss saw.
PROBABILITY_GAIN_KEY = "probability_gain"
#: The model kinds (:attr:`ModelCheckpoint.kind`); segmentation and training register what each does
#: (:mod:`napari_autosam.inference.segment_kinds`, :mod:`napari_autosam.training.train_kinds`).
MODEL_KINDS = ("binary", "classes", "depth")


def probability_gain(metadata: Mapping) -> float:
    """The gain a model's AutoSAM logits take before the sigmoid (1 for older, untrained or damaged metadata).

    Masks (logit > 0) do not depend on it; the probabilities, and what is read
    from them (confident objects, the probability layers), do: a model trained
    against a small-logit decoder under a gain k > 1 would otherwise show
    probabilities crowded around 0.5.
    """
    try:
        value = float(metadata.get(PROBABILITY_GAIN_KEY, 1.0))
    except (TypeError, ValueError):
        return 1.0
    return value if value > 0 and value == value else 1.0


@dataclass(frozen=True)
class ModelInfo:
    """What a model's metadata says, typed (read with :meth:`from_metadata`; absent keys take the defaults).

    sam_variant : the SAM it was trained with ("vit_b", "tiny", …), None when not recorded
    untrained : the built-in untrained default model
    probability_gain : the logit gain g was trained under (:func:`probability_gain`)
    resolution : the working resolution it was trained at (``{"mpp": …}`` etc.), or None
    metrics : the run's metrics (Dice of AutoSAM and h, best steps, …)
    version : its model-store version ("v0003"), or None
    parent : what it was fine-tuned from, or None
    created : ISO time of writing, or None
    """

    sam_variant: str | None = None
    untrained: bool = False
    probability_gain: float = 1.0
    resolution: dict | None = None
    metrics: dict = field(default_factory=dict)
    version: str | None = None
    parent: str | None = None
    created: str | None = None

    @classmethod
    def from_metadata(cls, meta: Mapping) -> ModelInfo:
        metrics = meta.get("metrics")
        return cls(sam_variant=meta.get("sam_variant"), untrained=bool(meta.get("untrained")),
                   probability_gain=probability_gain(meta), resolution=meta.get("resolution"),
                   metrics=dict(metrics) if isinstance(metrics, Mapping) else {}, version=meta.get("version"),
                   parent=meta.get("parent"), created=meta.get("created"))


@dataclass
class RunRecord:
    """What a training run records in its model's metadata (:meth:`to_metadata` gives the JSON keys).

    trained_on / validated_on : ``{"name", "sha1"}`` of each image
    validation, validation_kind : how validation was done (a sentence; "held-out strip", …)
    parent : the starting model (a path, version or description), or None for a new one
    metrics : final and best-step figures; training : the resolved TrainConfig as a dict
    ended : how each stage ended (``{"g": "time_limit", "h": "skipped"}``); cancelled : the run was cancelled
    normalization : the most common scaling of the training images, or None
    history : one dict per validation; version : the model-store version, or None
    resolution : the working resolution, or None; probability_gain : the logit gain g was trained under
    classes : a class model's classes (``ClassSet.to_metadata()``), else None (no key is written)
    """

    sam_fingerprint: str
    sam_checkpoint: str | None
    trained_on: list[dict]
    validated_on: list[dict]
    validation: str
    validation_kind: str
    parent: str | None
    metrics: dict
    training: dict
    ended: dict
    cancelled: bool
    normalization: dict | None
    history: list[dict]
    version: str | None
    resolution: dict | None
    probability_gain: float = 1.0
    classes: list | None = None

    def to_metadata(self) -> dict[str, Any]:
        """The metadata keys, in the order checkpoints have always had them."""
        meta = {
            "sam_fingerprint": self.sam_fingerprint,
            "sam_checkpoint": self.sam_checkpoint,
            "trained_on": self.trained_on,
            "trained_on_count": len(self.trained_on),
            "validated_on": self.validated_on,
            "validation": self.validation,
            "validation_kind": self.validation_kind,
            "parent": self.parent,
            "metrics": self.metrics,
            "training": self.training,
            "ended": self.ended,
            "cancelled": self.cancelled,
            "normalization": self.normalization,
            "history": self.history,
            "version": self.version,
            "resolution": self.resolution,
            PROBABILITY_GAIN_KEY: float(self.probability_gain),
        }
        if self.classes is not None:
            meta["classes"] = self.classes
        return meta


@dataclass
class ModelCheckpoint:
    """A loaded (or about to be saved) pair of g and h with metadata."""

    prompt_generator: nn.Module
    surrogate: nn.Module | None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: Depth adapters of SAM's encoder (:class:`~napari_autosam.sam.adapters.DepthAdapters`), or None.
    adapters: nn.Module | None = None
    #: A class model's :class:`~napari_autosam.models.multiclass.ClassHeads` (None: the binary model).
    class_heads: nn.Module | None = None

    @property
    def sam_variant(self) -> str | None:
        return self.metadata.get("sam_variant")

    @property
    def info(self) -> ModelInfo:
        """The metadata, typed."""
        return ModelInfo.from_metadata(self.metadata)

    @property
    def kind(self) -> str:
        """"depth" (depth adapters), "classes" (class heads) or "binary" (g and h alone): one of MODEL_KINDS."""
        if self.adapters is not None:
            return "depth"
        return "classes" if self.class_heads is not None else "binary"


def _describe(module: nn.Module) -> dict[str, Any]:
    return dict(module.config)


def save_checkpoint(
    path: str | os.PathLike,
    prompt_generator: nn.Module,
    surrogate: nn.Module | None = None,
    *,
    sam_variant: str | None = None,
    adapters: nn.Module | None = None,
    class_heads: nn.Module | None = None,
    **metadata: Any,
) -> Path:
    """Write g (and h) to ``path`` atomically; extra keywords go into the metadata.

    ``adapters`` (depth adapters of SAM's encoder) are stored as
    ``adapters.<name>`` tensors, their settings under the ``"adapters"`` key.
    A class model passes its ``class_heads`` (tensors ``classes.*``) and
    ``classes`` (the list of ``{"id", "name", "color"}``) with them.

    Useful metadata: ``trained_on`` (list of image names or hashes),
    ``parent`` (the checkpoint this one was fine-tuned from), ``metrics``.
    """
    tensors = {f"g.{k}": v.detach().cpu().contiguous() for k, v in prompt_generator.state_dict().items()}
    meta: dict[str, Any] = {
        "format": FORMAT,
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "sam_variant": sam_variant,
        "prompt_generator": _describe(prompt_generator),
        "surrogate": None,
    }
    if surrogate is not None:
        tensors.update({f"h.{k}": v.detach().cpu().contiguous() for k, v in surrogate.state_dict().items()})
        meta["surrogate"] = _describe(surrogate)
    meta.update(metadata)
    if adapters is not None:
        tensors.update({f"adapters.{k}": v.detach().cpu().contiguous() for k, v in adapters.state_dict().items()})
        meta["adapters"] = dict(adapters.config)
    if class_heads is not None:
        if len(meta.get("classes") or ()) != class_heads.num_classes:
            raise ValueError(f"{class_heads.num_classes} class heads need classes=[...] of that length in the metadata")
        tensors.update({f"classes.{k}": v.detach().cpu().contiguous() for k, v in class_heads.state_dict().items()})
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta, default=str)})
    return path


#: Metadata keys :func:`save_checkpoint` writes itself (a re-save writes them afresh).
_OWN_KEYS = ("format", "package_version", "created", "prompt_generator", "surrogate", "sam_variant", "adapters")


def save_copy(checkpoint: ModelCheckpoint, path: str | os.PathLike, **changes: Any) -> Path:
    """Write a loaded checkpoint to a new file, keeping its metadata (``changes`` override keys).

    ``path`` gets ``.safetensors`` appended when it has another suffix.
    Provenance (training data, metrics, parent) is kept; the format,
    creation time and architecture are written afresh.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors")
    meta = {k: v for k, v in checkpoint.metadata.items() if k not in _OWN_KEYS}
    meta.update(changes)
    return save_checkpoint(path, checkpoint.prompt_generator, checkpoint.surrogate,
                           sam_variant=checkpoint.sam_variant, adapters=checkpoint.adapters,
                           class_heads=checkpoint.class_heads, **meta)


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The metadata of a checkpoint, without loading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a napari-autosam checkpoint: {exc}") from exc
    if META_KEY not in header:
        raise CheckpointError(f"{path} is a safetensors file but not a napari-autosam checkpoint")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: its napari-autosam metadata is not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its napari-autosam metadata is a {type(meta).__name__}, expected an object")
    return meta


def _whole(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _architecture(meta: dict[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The g and h settings of the metadata, checked for type and bounded in size before anything is built."""
    g = meta.get("prompt_generator")
    if not isinstance(g, dict) or not isinstance(g.get("name"), str):
        raise CheckpointError(f"{path}: the metadata lacks prompt_generator {{\"name\": ..., \"input_size\": ...}} "
                              f"(found {json.dumps(g)[:80]})")
    unknown = sorted(set(g) - {"name", "input_size"})
    if unknown:
        raise CheckpointError(f"{path}: prompt_generator has unknown settings {unknown}")
    size = g.get("input_size", 512)
    if not _whole(size, 16, MAX_INPUT_SIZE) or size % 16:
        raise CheckpointError(f"{path}: prompt_generator input_size is {size!r}; expected a multiple of 16 "
                              f"between 16 and {MAX_INPUT_SIZE}")
    if not isinstance(meta.get("sam_variant"), (str, type(None))):
        raise CheckpointError(f"{path}: sam_variant is {meta['sam_variant']!r}; expected a SAM name or null")
    h = meta.get("surrogate")
    if h is None:
        return dict(g), None
    if not isinstance(h, dict) or sorted(set(h) - {"embed_dim", "hidden_channels"}):
        raise CheckpointError(f"{path}: surrogate settings {json.dumps(h)[:80]} are not "
                              "{\"embed_dim\": int, \"hidden_channels\": [int, int]}")
    hidden = h.get("hidden_channels", (64, 16))
    if not _whole(h.get("embed_dim", 256), 1, MAX_CHANNELS) or not (
            isinstance(hidden, (list, tuple)) and len(hidden) == 2 and all(_whole(c, 1, MAX_CHANNELS) for c in hidden)):
        raise CheckpointError(f"{path}: surrogate settings {json.dumps(h)[:80]} are out of range "
                              f"(whole numbers from 1 to {MAX_CHANNELS})")
    h = dict(h)
    if "hidden_channels" in h:
        h["hidden_channels"] = tuple(hidden)
    return dict(g), h


def _fill(module: nn.Module, state: dict[str, torch.Tensor], what: str, path: Path) -> None:
    """Load ``state`` into ``module`` or raise a CheckpointError naming every difference."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                parts.append(f"{label}: {', '.join(items[:5])}{more}")
        raise CheckpointError(f"{path}: the {what} weights do not fit its architecture; " + "; ".join(parts))
    module.load_state_dict(state)


def load_checkpoint(path: str | os.PathLike, *, device: torch.device | str = "cpu") -> ModelCheckpoint:
    """Rebuild g and h from the architecture the metadata names and load the weights."""
    from .prompt_generator import build_prompt_generator
    from .surrogate import SurrogateDecoder

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model checkpoint at {path}")
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read the tensors of {path}: {exc}") from exc
    g_config, h_config = _architecture(meta, path)
    try:
        generator = build_prompt_generator(**g_config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} names a prompt generator this version cannot build ({g_config}): {exc}") from exc
    _fill(generator, {k[2:]: v for k, v in tensors.items() if k.startswith("g.")}, "prompt generator", path)
    surrogate = None
    if h_config is not None:
        surrogate = SurrogateDecoder(**h_config)
        _fill(surrogate, {k[2:]: v for k, v in tensors.items() if k.startswith("h.")}, "surrogate decoder", path)
    adapters = _load_adapters(meta, tensors, path)
    heads = _load_class_heads(meta, tensors, path)
    return ModelCheckpoint(generator.to(device).eval(), surrogate.to(device).eval() if surrogate else None, meta,
                           adapters.to(device).eval() if adapters is not None else None,
                           class_heads=heads.to(device) if heads is not None else None)


def _load_adapters(meta: dict[str, Any], tensors: dict[str, torch.Tensor], path: Path) -> nn.Module | None:
    """The depth adapters named by the ``"adapters"`` metadata (None when absent: a 2D model)."""
    if meta.get("adapters") is None:
        return None
    from ..sam.adapters import adapters_from_config

    try:
        adapters = adapters_from_config(meta["adapters"])
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    _fill(adapters, {k[9:]: v for k, v in tensors.items() if k.startswith("adapters.")}, "depth adapter", path)
    return adapters


def _load_class_heads(meta: dict[str, Any], tensors: dict[str, torch.Tensor], path: Path) -> nn.Module | None:
    """The class heads of a checkpoint (tensors ``classes.*``), or None for a binary model."""
    from ..class_sets import ClassesError, classes_from_metadata
    from .multiclass import ClassHeads

    try:
        classes = classes_from_metadata(meta, str(path))
    except ClassesError as exc:
        raise CheckpointError(str(exc)) from None
    if classes is None:
        return None
    try:
        heads = ClassHeads(len(classes))
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    _fill(heads, {k[8:]: v for k, v in tensors.items() if k.startswith("classes.")}, "class heads", path)
    return heads.eval()
