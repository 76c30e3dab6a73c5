"""What the widget's sections share: the loaded SAM, the prompt generator in use, and the stores.

One :class:`Session` per widget.  It holds no Qt widgets, only state and
signals, so every section can be built and tested on its own.

Where things go on disk (shown in the widget, changeable there):

* model versions: ``<data>/models/<sam>/v0001.safetensors`` …, one lineage per SAM,
  because a prompt generator is trained against one SAM's decoder;
* accepted corrections: ``<data>/annotations/``;
* SAM checkpoints and embeddings: the cache (``$NAPARI_AUTOSAM_CACHE``).

``<data>`` is :func:`napari_autosam.annotations.data_dir` (the platform's user
data folder, or ``$NAPARI_AUTOSAM_DATA``) — never the working directory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Signal

from ..annotations import AnnotationStore, data_dir


def sam_key(sam: Any) -> str:
    """Folder name of the model-version lineage for a SAM: its variant, plus the file for custom ones."""
    variant = getattr(sam, "variant", "sam")
    path = getattr(sam, "checkpoint_path", None)
    official = path is None or re.match(r"^sam_(vit_[blh]_[0-9a-f]{6}|tiny_r\d+)\.pth$", Path(path).name)
    return variant if official else f"{variant}-{Path(path).stem}"


class Session(QObject):
    """State shared by the sections of the AutoSAM widget.

    Signals
    -------
    sam_changed : a SAM was loaded (``sam``, ``segmenter`` and ``model_store`` changed)
    model_changed : the prompt generator in use changed (``model``, ``model_label``)
    annotations_changed : a correction was accepted, or the store moved
    """

    sam_changed = Signal()
    model_changed = Signal()
    annotations_changed = Signal()

    def __init__(self, parent: QObject | None = None, *, root: str | os.PathLike | None = None) -> None:
        super().__init__(parent)
        self.root = Path(root) if root is not None else data_dir()
        self.sam = None
        self.sam_name: str | None = None
        self.cache = None
        self.segmenter = None
        self.model = None  # ModelCheckpoint or None (= untrained g)
        self.model_label = "untrained (new)"
        self.annotations = AnnotationStore(self.root / "annotations")
        #: Overrides for :class:`~napari_autosam.training.TrainConfig` (the widget's fields, tests).
        self.train_settings: dict[str, Any] = {}

    # ---------------------------------------------------------------- locations

    @property
    def models_root(self) -> Path:
        return self.root / "models"

    @property
    def model_store(self):
        """The :class:`~napari_autosam.models.store.ModelStore` of the loaded SAM (None before one is loaded)."""
        from ..models.store import ModelStore

        if self.sam is None:
            return None
        return ModelStore(self.models_root / sam_key(self.sam))

    def set_root(self, root: str | os.PathLike) -> None:
        """Keep model versions and corrections under another folder from now on."""
        self.root = Path(root)
        self.annotations = AnnotationStore(self.root / "annotations")
        self.annotations_changed.emit()
        if self.sam is not None:
            self.sam_changed.emit()

    def embedding_dir(self) -> Path:
        from ..sam.download import cache_dir

        return cache_dir() / "embeddings"

    # ---------------------------------------------------------------- SAM and model

    def set_sam(self, sam, name: str) -> None:
        """Use a freshly loaded SAM: new embedding cache and segmenter, and the lineage's active version."""
        from ..inference import Segmenter
        from ..sam.cache import EmbeddingCache

        self.sam, self.sam_name = sam, name
        self.cache = EmbeddingCache(sam, self.embedding_dir())
        self.segmenter = Segmenter(sam, model=None, cache=self.cache)
        self.model, self.model_label = None, "untrained (new)"
        self.sam_changed.emit()
        store = self.model_store
        if store is not None and store.active is not None:
            self.use_version(store.active)
        else:
            self.model_changed.emit()

    def set_model(self, checkpoint, label: str) -> None:
        """Use ``checkpoint`` (a ModelCheckpoint, or None for a new untrained g) from now on."""
        if checkpoint is not None:
            device = next(self.sam.parameters()).device if self.sam is not None else "cpu"
            checkpoint.prompt_generator.to(device).eval()
            if checkpoint.surrogate is not None:
                checkpoint.surrogate.to(device).eval()
        self.model, self.model_label = checkpoint, label
        if self.segmenter is not None:
            self.segmenter.set_model(checkpoint)
        self.model_changed.emit()

    def use_version(self, version: str) -> None:
        """Load model ``version`` of this SAM's lineage, make it the active one, and use it."""
        from ..models.checkpoint import load_checkpoint

        store = self.model_store
        path = store.activate(version)
        self.set_model(load_checkpoint(path), version)

    @property
    def active_version(self) -> str | None:
        store = self.model_store
        return store.active if store is not None else None

    def describe_model(self) -> str:
        """One line for the widget: which g is in use and what it was trained on."""
        if self.sam is None:
            return "No SAM loaded yet."
        if self.model is None:
            return "Prompt generator: new, untrained — accept corrections and fine-tune to teach it."
        meta = self.model.metadata
        count = meta.get("trained_on_count")
        trained = f", trained on {count} image{'s' if count != 1 else ''}" if count else ""
        name = meta.get("prompt_generator", {}).get("name", "")
        return f"Prompt generator: {self.model_label} ({name}{trained})"
