"""What the widget's sections share: the loaded SAM, the prompt generator in use, and the stores.

One :class:`Session` per widget.  It holds no Qt widgets, only state and
signals, so every section can be built and tested on its own.

Where things go on disk (shown in the widget, changeable there):

* model versions: ``<data>/models/<sam>/v0001.safetensors`` …, one lineage per SAM,
  because a prompt generator is trained against one SAM's decoder;
* accepted corrections: ``<data>/annotations/``;
* SAM checkpoints and embeddings: the cache (``$NAPARI_AUTOSAM_CACHE``).

``<data>`` is :func:`napari_autosam.paths.data_dir` (the platform's user
data folder, or ``$NAPARI_AUTOSAM_DATA``) — never the working directory; every
location comes from :mod:`napari_autosam.paths`, the same as for the CLI and
the Python API.

The version in use has one source of truth: :attr:`Session.version`, which is
always the store's active version when the model came from the store (None
for an untrained g or a model loaded from a file).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from qtpy.QtCore import QObject, Signal

from .. import paths
from ..annotations import AnnotationStore

#: What a model's validation kept aside, after "trained on N images" (the two counts add up to the corrections).
_HELD_OUT = {"held-out images": " ({held} more held out to measure the Dice)",
             "held-out strip": " (a strip of each held out to measure the Dice)",
             "training image": " (the Dice is measured on them: nothing held out)"}


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
        self.root = Path(root) if root is not None else paths.data_dir()
        self.sam = None
        self.sam_name: str | None = None
        self.cache = None
        self.segmenter = None
        self.model = None  # ModelCheckpoint or None (= untrained g)
        self.model_label = "untrained (new)"
        #: the store version in use (the store's active one), or None for an untrained g or a file
        self.version: str | None = None
        self.annotations = AnnotationStore(paths.annotation_dir(self.root))
        #: Overrides for :class:`~napari_autosam.training.TrainConfig` (the widget's fields, tests).
        self.train_settings: dict[str, Any] = {}
        #: The open slide project (:class:`napari_autosam.project.Project`), or None.
        self.project = None

    # ---------------------------------------------------------------- locations

    @property
    def models_root(self) -> Path:
        return paths.models_root(self.root)

    @property
    def model_store(self):
        """The :class:`~napari_autosam.models.store.ModelStore` of the loaded SAM (None before one is loaded)."""
        from ..models.store import ModelStore
        from ..sam.registry import identity_of

        if self.sam is None:
            return None
        return ModelStore(paths.model_store_dir(identity_of(self.sam), self.root))

    def set_root(self, root: str | os.PathLike) -> None:
        """Keep model versions and corrections under another folder from now on."""
        self.root = Path(root)
        self.annotations = AnnotationStore(paths.annotation_dir(self.root))
        self.annotations_changed.emit()
        if self.sam is not None:
            self.sam_changed.emit()

    def set_project(self, project) -> None:
        """Work in a slide project (None: the data folder again): its corrections, model store and slides' labels.

        With a SAM loaded, the project's active model version is used (an untrained g when it has none).
        """
        self.project = project
        self.set_root(project.root if project is not None else paths.data_dir())
        store = self.model_store
        if store is not None and store.active is not None:
            self.use_version(store.active)
        elif store is not None:
            self.set_model(None, "untrained (new)")

    @staticmethod
    def embedding_dir() -> Path:
        return paths.embedding_dir()

    # ---------------------------------------------------------------- SAM and model

    def set_sam(self, sam, name: str) -> None:
        """Use a freshly loaded SAM: new embedding cache and segmenter, and the lineage's active version."""
        from ..inference import Segmenter
        from ..sam.cache import EmbeddingCache

        self.sam, self.sam_name = sam, name
        self.cache = EmbeddingCache(sam, self.embedding_dir())
        self.segmenter = Segmenter(sam, model=None, cache=self.cache)
        self.model, self.model_label, self.version = None, "untrained (new)", None
        self.sam_changed.emit()
        store = self.model_store
        if store is not None and store.active is not None:
            self.use_version(store.active)
        else:
            self.model_changed.emit()

    def set_model(self, checkpoint, label: str, *, version: str | None = None) -> None:
        """Use ``checkpoint`` (a ModelCheckpoint, or None for a new untrained g) from now on.

        ``version`` names the store version it is (made the store's active one);
        None for an untrained g or a model from a file.
        """
        if version is not None:
            self.model_store.activate(version)
        if checkpoint is not None:
            device = next(self.sam.parameters()).device if self.sam is not None else "cpu"
            checkpoint.prompt_generator.to(device).eval()
            if checkpoint.surrogate is not None:
                checkpoint.surrogate.to(device).eval()
        self.model, self.model_label, self.version = checkpoint, label, version
        if self.segmenter is not None:
            self.segmenter.set_model(checkpoint)
        self.model_changed.emit()

    def use_version(self, version: str) -> None:
        """Load model ``version`` of this SAM's lineage, make it the active one, and use it."""
        from ..models.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(self.model_store.path(version))
        self.set_model(checkpoint, version, version=version)

    @property
    def active_version(self) -> str | None:
        """The store version in use (None for an untrained g or a model from a file)."""
        return self.version

    def describe_model(self) -> str:
        """One line for the widget: which g is in use and what it was trained on."""
        if self.sam is None:
            return "No SAM loaded yet."
        if self.model is None:
            return "Prompt generator: new, untrained — accept corrections and fine-tune to teach it."
        meta = self.model.metadata
        count = meta.get("trained_on_count")
        trained = f", trained on {count} image{'s' if count != 1 else ''}" if count else ""
        if count:
            trained += _HELD_OUT.get(meta.get("validation_kind"), "").format(held=len(meta.get("validated_on") or []))
        name = meta.get("prompt_generator", {}).get("name", "")
        return f"Prompt generator: {self.model_label} ({name}{trained})"
