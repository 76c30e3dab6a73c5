"""Where napari-autosam keeps its files: the one home of every default location.

Two roots, both outside the working directory:

* the **data folder** (``$NAPARI_AUTOSAM_DATA``, else the platform's user data
  directory) holds what users make and want to keep::

      <data>/annotations/                 accepted corrections (AnnotationStore)
      <data>/models/<sam>/v0001.safetensors …   model versions, one lineage per SAM
      <data>/demo/<time stamp>/           the demo's runs
      <data>/labels/<stem>-<hash>/        on-disk labels (OME-Zarr) of big images segmented in napari

* the **cache folder** (``$NAPARI_AUTOSAM_CACHE``, else the platform's user
  cache directory) holds what can be fetched or recomputed::

      <cache>/checkpoints/                SAM checkpoints
      <cache>/embeddings/<sam fingerprint>/   SAM image embeddings

Scratch space for the on-disk outputs of big segmentations is
``$NAPARI_AUTOSAM_SCRATCH`` or the system's temporary folder.

A prompt generator is trained against one SAM's decoder, so each SAM has its
own model store, named by :func:`sam_lineage`.  The Python API
(:func:`napari_autosam.training.train` without ``store``/``out``), the command
line and the napari widget all ask this module, so a model trained in one of
them is listed by the others.  No napari or Qt here.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import platformdirs

#: Environment variable naming the data folder (annotations, model versions).
DATA_ENV = "NAPARI_AUTOSAM_DATA"
#: Environment variable naming the cache folder (SAM checkpoints, embeddings).
CACHE_ENV = "NAPARI_AUTOSAM_CACHE"
#: Environment variable naming the parent of scratch folders.
SCRATCH_ENV = "NAPARI_AUTOSAM_SCRATCH"

#: File names of the official SAM checkpoints and of the tiny SAM's generated one.
_OFFICIAL_FILE = re.compile(r"^sam_(vit_[blh]_[0-9a-f]{6}|tiny_r\d+)\.pth$")


def _from_env(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    """The data folder: ``$NAPARI_AUTOSAM_DATA`` or the user data directory (not created here)."""
    return _from_env(DATA_ENV) or Path(platformdirs.user_data_dir("napari-autosam"))


def cache_dir() -> Path:
    """The cache folder: ``$NAPARI_AUTOSAM_CACHE`` or the user cache directory (not created here)."""
    return _from_env(CACHE_ENV) or Path(platformdirs.user_cache_dir("napari-autosam"))


def _root(root: str | os.PathLike | None) -> Path:
    return Path(root).expanduser() if root is not None else data_dir()


def annotation_dir(root: str | os.PathLike | None = None) -> Path:
    """The store of accepted corrections under the data folder ``root`` (default :func:`data_dir`)."""
    return _root(root) / "annotations"


def models_root(root: str | os.PathLike | None = None) -> Path:
    """The folder holding one model store per SAM."""
    return _root(root) / "models"


def sam_lineage(variant: str | None, checkpoint_path: str | os.PathLike | None = None) -> str:
    """Folder name of a SAM's model lineage: its variant, plus the file's stem for a custom checkpoint.

    Official checkpoints (and the tiny SAM) are known by their file names,
    so ``vit_b`` loaded from the cache and from a copy of the official file
    share one lineage; a fine-tuned or renamed SAM file gets its own.
    """
    variant = variant or "sam"
    if checkpoint_path is None or _OFFICIAL_FILE.match(Path(checkpoint_path).name):
        return variant
    return f"{variant}-{Path(checkpoint_path).stem}"


def model_store_dir(sam=None, root: str | os.PathLike | None = None) -> Path:
    """The model-store folder for a SAM: ``<data>/models/<lineage>/``.

    Parameters
    ----------
    sam : a :class:`~napari_autosam.sam.registry.SamIdentity` (anything with a ``lineage``), a variant name, or None
        None (a SAM whose identity is unknown) gives the ``sam`` lineage.  For a
        loaded SAM module pass ``sam_identity(sam)``
        (:func:`napari_autosam.sam.registry.sam_identity`).
    root : the data folder; default :func:`data_dir`
    """
    if sam is None or isinstance(sam, str):
        lineage = sam_lineage(sam)
    elif isinstance(getattr(sam, "lineage", None), str):
        lineage = sam.lineage
    else:
        raise TypeError(f"model_store_dir takes a SAM variant name or a SamIdentity, not {type(sam).__name__} "
                        "(pass napari_autosam.sam.registry.sam_identity(sam))")
    return models_root(root) / lineage


def labels_dir(source: str, stem: str, root: str | os.PathLike | None = None) -> Path:
    """Where the widget keeps the OME-Zarr labels of a big image: ``<data>/labels/<stem>-<hash of source>``.

    ``source`` is the image's path (or a layer description); its hash keeps
    two slides with the same file name apart.
    """
    import hashlib

    digest = hashlib.sha1(str(source).encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem) or "image"
    return _root(root) / "labels" / f"{safe}-{digest}"


class FolderError(OSError):
    """A default folder that cannot be used (a file is in the way, no permission); the message says which."""


def _make_folder(path: Path, what: str) -> None:
    """Create ``path``, or raise FolderError naming ``what`` and the file in the way."""
    for folder in (path, *path.parents):
        if folder.exists() and not folder.is_dir():
            raise FolderError(f"{what} cannot be used: {folder} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FolderError(f"{what} cannot be created: {exc.strerror or exc}") from None


def checkpoint_dir(*, create: bool = True) -> Path:
    """Where SAM checkpoints are downloaded: ``<cache>/checkpoints`` (created unless ``create=False``).

    Raises FolderError when it cannot be created (e.g. ``$NAPARI_AUTOSAM_CACHE`` names a file).
    """
    path = cache_dir() / "checkpoints"
    if create:
        source = f" (${CACHE_ENV})" if _from_env(CACHE_ENV) else ""
        _make_folder(path, f"the cache folder {cache_dir()}{source}")
    return path


def embedding_dir() -> Path:
    """Where SAM embeddings are kept on disk: ``<cache>/embeddings`` (one subfolder per SAM)."""
    return cache_dir() / "embeddings"


def scratch_dir() -> Path:
    """Parent of the scratch folders of big segmentations: ``$NAPARI_AUTOSAM_SCRATCH`` or the temp folder."""
    return _from_env(SCRATCH_ENV) or Path(tempfile.gettempdir())


def demo_dir() -> Path:
    """Parent of the demo's runs: ``<data>/demo``."""
    return data_dir() / "demo"


def describe() -> dict[str, str]:
    """The default locations, for ``napari-autosam info`` and bug reports."""
    return {
        "data_dir": str(data_dir()),
        "annotations": str(annotation_dir()),
        "models": str(models_root()),
        "cache_dir": str(cache_dir()),
        "checkpoints": str(checkpoint_dir(create=False)),
        "embeddings": str(embedding_dir()),
        "scratch": str(scratch_dir()),
    }
