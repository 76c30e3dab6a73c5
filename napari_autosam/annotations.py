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

Several processes (two napari windows, a script) may accept into one store at
once: every read-modify-write of the record happens under a cross-process file
lock (``<root>/annotations.json.lock``) and re-reads the record inside it.  An
accept is all or nothing: the image and mask are written under temporary
names, moved into place, and the record is written last; if any step fails,
the new files are removed again, so a failed accept never leaves files behind
or blocks a later accept of the same image.  Masks are checked before anything
is written: binary (bool, 0/1) or non-negative integer labels; float masks
only when they hold whole numbers >= 0.  Paths read from the record must stay
inside the store.

The default root is :func:`napari_autosam.paths.annotation_dir`: under the
platform's user data directory, or ``$NAPARI_AUTOSAM_DATA`` when set -- never
the working directory.
No napari or Qt here.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import filelock
import numpy as np
import tifffile

from .io.atomic import atomic_write_text
from .io.masks import check_mask
from .paths import DATA_ENV, annotation_dir, data_dir, model_store_dir  # noqa: F401  (re-exported)

FORMAT = "napari-autosam-annotations/1"
RECORD = "annotations.json"
#: The cross-process lock guarding the record (kept beside it; its presence means nothing).
LOCK = RECORD + ".lock"
#: Seconds an accept waits for another process holding the store's lock.
LOCK_TIMEOUT = 60.0
_ENTRY_KEYS = ("key", "revision", "image", "mask", "shape", "created")


def default_annotation_dir() -> Path:
    """The default store: :func:`napari_autosam.paths.annotation_dir` of the data folder."""
    return annotation_dir()


def default_model_dir(sam=None) -> Path:
    """The default model store of a SAM (a variant name, a SamIdentity or None): :func:`napari_autosam.paths.model_store_dir`."""
    return model_store_dir(sam)


def _checked_image(image) -> np.ndarray:
    """``image`` as an array, or ValueError when it is not a non-empty ``H×W`` / ``H×W×C`` array of numbers."""
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0 or image.dtype.kind not in "biuf":
        raise ValueError(f"the image must be a non-empty H×W or H×W×C array of numbers, "
                         f"got {image.dtype} {image.shape}")
    return image


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
        """An entry from its record form; ValueError naming what is missing or of the wrong type."""
        if not isinstance(data, dict):
            raise ValueError(f"an entry is a {type(data).__name__}, expected an object")
        missing = [k for k in _ENTRY_KEYS if k not in data]
        if missing:
            raise ValueError(f"an entry lacks {', '.join(missing)}")
        data = dict(data)
        try:
            for name in ("slice_index", "region", "shape"):
                if data.get(name) is not None:
                    data[name] = tuple(int(v) for v in data[name])
            data["revision"] = int(data["revision"])
        except (TypeError, ValueError):
            raise ValueError(f"entry {data.get('key')!r} has a non-integer revision, shape, region or slice") from None
        for name in ("key", "image", "mask"):
            if not isinstance(data[name], str):
                raise ValueError(f"entry {data.get('key')!r}: {name} must be a string, got {data[name]!r}")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def _json_extra(extra: dict[str, Any]) -> dict[str, Any]:
    for name, value in extra.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise ValueError(f"the extra value {name}={value!r} cannot be stored: it is not JSON "
                             "(use strings, numbers, lists and dicts)") from None
    return dict(extra)


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

    @contextlib.contextmanager
    def _locked(self):
        """This thread and no other process works on the record inside the block."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(self.root / LOCK), timeout=LOCK_TIMEOUT)
        try:
            with self._lock, lock:
                yield
        except filelock.Timeout:
            raise OSError(f"the annotation store {self.root} is locked by another process "
                          f"(waited {LOCK_TIMEOUT:.0f} s for {lock.lock_file})") from None

    def _read_record(self) -> list[dict[str, Any]]:
        if not self.record_path.is_file():
            return []
        try:
            data = json.loads(self.record_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"the annotation record {self.record_path} is unreadable: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries", []), list):
            raise ValueError(f"{self.record_path} is not a napari-autosam annotation record "
                             f"(expected an object with format {FORMAT!r} and a list of entries)")
        return list(data.get("entries", []))

    def _record_text(self, entries: list[dict[str, Any]]) -> str:
        return json.dumps({"format": FORMAT, "entries": entries}, indent=1)

    def history(self) -> list[AnnotationEntry]:
        """Every accepted mask, every revision, oldest first."""
        entries = []
        for i, item in enumerate(self._read_record()):
            try:
                entries.append(AnnotationEntry.from_json(item))
            except ValueError as exc:
                raise ValueError(f"the annotation record {self.record_path}, entry {i}: {exc}") from None
        return entries

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

    def _stage(self, relative: str, array: np.ndarray) -> Path:
        """Write ``array`` as a TIFF under a temporary name beside ``relative``; return that name."""
        final = self.root / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.part.tif")
        try:
            tifffile.imwrite(tmp, array)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def _clean_leftovers(self) -> None:
        """Remove temporary files of accepts that died (called under the lock, so none is live)."""
        for folder in (self.root / "images", self.root / "masks"):
            if folder.is_dir():
                for part in folder.glob(".*.part*"):
                    part.unlink(missing_ok=True)
        for part in self.root.glob(f".{RECORD}.*.part*"):
            part.unlink(missing_ok=True)

    def _next_revision(self, record: list[dict[str, Any]], key: str) -> int:
        """One more than the newest recorded revision, skipping names a stranger's file occupies."""
        revision = 1 + max((int(e["revision"]) for e in record if isinstance(e, dict) and e.get("key") == key),
                           default=0)
        while (self.root / f"masks/{key}_r{revision:03d}.tif").exists():
            revision += 1  # never overwrite a file the record does not know about
        return revision

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
        """Store a corrected ``mask`` with its ``image`` and return the new entry; all or nothing.

        Parameters
        ----------
        image : ndarray
            ``H×W``, ``H×W×3`` (RGB) or ``H×W×C`` image the mask was drawn on.
        mask : ndarray
            ``H×W`` bool or non-negative integer labels (anything > 0 is
            foreground); float masks only when they hold whole numbers >= 0.
        source, layer_name, slice_index, region
            Where the image came from; recorded, not interpreted.
        **extra
            JSON-serialisable facts to keep with the entry.

        Raises
        ------
        ValueError
            A mask that is not binary or labels, does not fit the image, or
            ``extra`` that is not JSON; nothing is written.
        OSError
            Writing failed (e.g. the disk is full); nothing is left behind.
        """
        image = _checked_image(image)
        labels = check_mask(mask, image.shape)
        extra = _json_extra(extra)
        if isinstance(slice_index, (int, np.integer)):
            slice_index = (int(slice_index),)
        key = image_hash(image)
        with self._locked():
            self._clean_leftovers()
            record = self._read_record()
            revision = self._next_revision(record, key)
            entry = AnnotationEntry(
                key=key,
                revision=revision,
                image=f"images/{key}.tif",
                mask=f"masks/{key}_r{revision:03d}.tif",
                source=None if source is None else str(source),
                layer_name=layer_name,
                slice_index=None if slice_index is None else tuple(int(i) for i in slice_index),
                region=None if region is None else tuple(int(v) for v in region),
                shape=tuple(int(s) for s in image.shape),
                created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                foreground_pixels=int(np.count_nonzero(labels)),
                extra=extra,
            )
            self._commit(record, entry, image, labels)
        return entry

    def _commit(self, record: list[dict[str, Any]], entry: AnnotationEntry, image: np.ndarray,
                labels: np.ndarray) -> None:
        """Stage the files, move them into place, write the record; undo everything on failure."""
        staged: list[tuple[Path, Path]] = []
        placed: list[Path] = []
        try:
            image_path = self.root / entry.image
            if not image_path.is_file():  # the same image accepted before: its pixels are already there
                staged.append((self._stage(entry.image, image), image_path))
            staged.append((self._stage(entry.mask, labels), self.root / entry.mask))
            text = self._record_text([*record, asdict(entry)])
            for tmp, final in staged:
                os.replace(tmp, final)
                placed.append(final)
            atomic_write_text(self.record_path, text)
        except BaseException:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            for final in placed:
                final.unlink(missing_ok=True)
            raise

    # ------------------------------------------------------------------ read

    def _inside(self, relative: str) -> Path:
        """``root / relative``, refusing paths that lead out of the store."""
        path = (self.root / relative).resolve()
        if Path(relative).is_absolute() or not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"the annotation record {self.record_path} names {relative!r}, "
                             "which is outside the store; entries must name files inside it")
        return path

    def load(self, entry: AnnotationEntry) -> tuple[np.ndarray, np.ndarray]:
        """``(image, mask)`` arrays of an entry."""
        image_path, mask_path = self._inside(entry.image), self._inside(entry.mask)
        try:
            return tifffile.imread(image_path), tifffile.imread(mask_path)
        except Exception as exc:  # missing, truncated or foreign files
            raise ValueError(f"annotation {entry.name} in {self.root}: cannot read {image_path.name} or "
                             f"{mask_path.name}: {type(exc).__name__}: {exc}") from exc

    def arrays(self) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
        """Images, masks and names of the newest revision of every image, for training."""
        images, masks, names = [], [], []
        for entry in self.entries():
            image, mask = self.load(entry)
            images.append(image)
            masks.append(mask)
            names.append(entry.name)
        return images, masks, names
