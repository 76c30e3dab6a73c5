"""The on-disk store of accepted corrections: images, masks, and where each came from.

Layout of a store folder::

    <root>/annotations.json           # the record: one entry per accepted mask
    <root>/images/<key>.tif           # the image (slice or region) the mask belongs to
    <root>/masks/<key>_r001.tif       # the accepted mask, revision 1
    <root>/masks/<key>_r002.tif       # a later correction of the same image: never overwrites r001

``key`` is a content hash of the image, so accepting a correction for the same
image (or stack slice, or region) again adds a revision instead of a duplicate;
training uses the newest revision of every key.  Every file is written
atomically, and a file that exists is never written again.

The default root is :func:`napari_autosam.paths.annotation_dir`: under the
platform's user data directory, or ``$NAPARI_AUTOSAM_DATA`` when set -- never
the working directory.
No napari or Qt here.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .io.atomic import atomic_path, atomic_write_text
from .paths import DATA_ENV, annotation_dir, data_dir, model_store_dir  # noqa: F401  (re-exported)

FORMAT = "napari-autosam-annotations/1"
RECORD = "annotations.json"


def default_annotation_dir() -> Path:
    """The default store: :func:`napari_autosam.paths.annotation_dir` of the data folder."""
    return annotation_dir()


def default_model_dir(sam=None) -> Path:
    """The default model store of a SAM: :func:`napari_autosam.paths.model_store_dir`."""
    return model_store_dir(sam)


def image_hash(image: np.ndarray) -> str:
    """Short content hash of an array (shape, dtype and pixels)."""
    image = np.ascontiguousarray(image)
    digest = hashlib.sha1(f"{image.shape}{image.dtype.str}".encode())
    digest.update(memoryview(image).cast("B"))
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class AnnotationEntry:
    """One accepted mask.

    Attributes
    ----------
    key : str
        Content hash of the image; the same image always has the same key.
    revision : int
        1 for the first accepted mask of this image, 2 for the next correction, …
    image, mask : str
        Paths of the TIFF files, relative to the store's root.
    source : str or None
        Where the image came from (a file path, a layer's source, "sample").
    layer_name : str or None
        The napari layer the image was taken from.
    slice_index : tuple of int or None
        Index of the slice in a stack (the leading axes), if any.
    region : tuple of 4 int or None
        ``(y0, y1, x0, x1)`` of a crop of a larger 2D image, if any (the segmenter's order).
    shape : tuple of int
        Shape of the image array.
    created : str
        ISO time stamp (UTC).
    extra : dict
        Anything else the caller recorded (e.g. the model version that made the mask).
    """

    key: str
    revision: int
    image: str
    mask: str
    source: str | None
    layer_name: str | None
    slice_index: tuple[int, ...] | None
    region: tuple[int, int, int, int] | None
    shape: tuple[int, ...]
    created: str
    foreground_pixels: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.key}_r{self.revision:03d}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnnotationEntry:
        data = dict(data)
        for name in ("slice_index", "region", "shape"):
            if data.get(name) is not None:
                data[name] = tuple(int(v) for v in data[name])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def _label_dtype(mask: np.ndarray) -> np.dtype:
    top = int(mask.max()) if mask.size else 0
    if mask.dtype == bool or top <= 255:
        return np.dtype(np.uint8)
    return np.dtype(np.uint16) if top < 2**16 else np.dtype(np.uint32)


class AnnotationStore:
    """Accepted corrections in a folder (see the module docstring for the layout).

    Parameters
    ----------
    root : path or None
        The store's folder; None means :func:`default_annotation_dir`.
        Created on the first :meth:`accept`.
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_annotation_dir()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ record

    @property
    def record_path(self) -> Path:
        return self.root / RECORD

    def _read_record(self) -> list[dict[str, Any]]:
        if not self.record_path.is_file():
            return []
        try:
            data = json.loads(self.record_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"the annotation record {self.record_path} is unreadable: {exc}") from exc
        if data.get("format") != FORMAT:
            raise ValueError(f"{self.record_path} is not a napari-autosam annotation record")
        return list(data.get("entries", []))

    def _write_record(self, entries: list[dict[str, Any]]) -> None:
        text = json.dumps({"format": FORMAT, "entries": entries}, indent=1)
        atomic_write_text(self.record_path, text)

    def history(self) -> list[AnnotationEntry]:
        """Every accepted mask, every revision, oldest first."""
        return [AnnotationEntry.from_json(item) for item in self._read_record()]

    def entries(self) -> list[AnnotationEntry]:
        """The newest revision of each image, in the order the images were first accepted."""
        newest: dict[str, AnnotationEntry] = {}
        for entry in self.history():
            if entry.key not in newest or entry.revision > newest[entry.key].revision:
                newest[entry.key] = entry
        return list(newest.values())

    def __len__(self) -> int:
        return len(self.entries())

    # ------------------------------------------------------------------ write

    def _write_new(self, relative: str, array: np.ndarray) -> None:
        """Write a TIFF atomically; refuse to replace an existing file."""
        path = self.root / relative
        if path.exists():
            raise FileExistsError(f"{path} already exists; annotation files are never overwritten")
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, array)

    def accept(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        *,
        source: str | None = None,
        layer_name: str | None = None,
        slice_index: Sequence[int] | int | None = None,
        region: Sequence[int] | None = None,
        **extra: Any,
    ) -> AnnotationEntry:
        """Store a corrected ``mask`` with its ``image`` and return the new entry.

        Parameters
        ----------
        image : ndarray
            ``H×W``, ``H×W×3`` (RGB) or ``H×W×C`` image the mask was drawn on.
        mask : ndarray
            ``H×W`` labels or boolean mask (anything > 0 is foreground).
        source, layer_name, slice_index, region
            Where the image came from; recorded, not interpreted.
        **extra
            JSON-serialisable facts to keep with the entry.
        """
        image = np.asarray(image)
        mask = np.asarray(mask)
        if mask.ndim != 2 or tuple(mask.shape) != tuple(image.shape[:2]):
            raise ValueError(f"mask of shape {mask.shape} does not fit the image of shape {image.shape}")
        if isinstance(slice_index, (int, np.integer)):
            slice_index = (int(slice_index),)
        key = image_hash(image)
        with self._lock:
            record = self._read_record()
            revision = 1 + max((int(e["revision"]) for e in record if e["key"] == key), default=0)
            image_rel = f"images/{key}.tif"
            mask_rel = f"masks/{key}_r{revision:03d}.tif"
            if not (self.root / image_rel).exists():
                self._write_new(image_rel, image)
            self._write_new(mask_rel, mask.astype(_label_dtype(mask)))
            entry = AnnotationEntry(
                key=key,
                revision=revision,
                image=image_rel,
                mask=mask_rel,
                source=None if source is None else str(source),
                layer_name=layer_name,
                slice_index=None if slice_index is None else tuple(int(i) for i in slice_index),
                region=None if region is None else tuple(int(v) for v in region),
                shape=tuple(int(s) for s in image.shape),
                created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                foreground_pixels=int(np.count_nonzero(mask)),
                extra=dict(extra),
            )
            record.append(asdict(entry))
            self._write_record(record)
        return entry

    # ------------------------------------------------------------------ read

    def load(self, entry: AnnotationEntry) -> tuple[np.ndarray, np.ndarray]:
        """``(image, mask)`` arrays of an entry."""
        return tifffile.imread(self.root / entry.image), tifffile.imread(self.root / entry.mask)

    def arrays(self) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
        """Images, masks and names of the newest revision of every image, for training."""
        images, masks, names = [], [], []
        for entry in self.entries():
            image, mask = self.load(entry)
            images.append(image)
            masks.append(mask)
            names.append(entry.name)
        return images, masks, names
