"""A slide project: the slides a person works on, and everything made for them, in one folder of plain files.

Layout (docs/projects.md describes it for users)::

    <project>/project.json                 # format, version, the slides (path, fingerprint, state)
    <project>/project.json.lock            # cross-process lock for project.json and the labels
    <project>/slides/<id>/labels/          # the slide's OME-Zarr label images (<stem>_autosam.ome.zarr, …)
    <project>/slides/<id>/review.csv       # review scores, when reviewed
    <project>/slides/<id>/objects.geojson  # measurements (objects with their areas), when exported
    <project>/annotations/                 # accepted corrections of every slide (an AnnotationStore);
                                           #   each entry's ``project_slide`` names its slide
    <project>/models/<sam>/v0001.safetensors …, active.json   # the model store, one lineage per SAM

Every change to ``project.json`` is a read-modify-write under the lock,
re-reading the file inside it, and the file is replaced atomically, so two
processes (two napari windows, a script and a window) adding slides or
accepting corrections at once lose nothing.  A slide whose file changed
since it was added (another size, other bytes at its ends) is refused with
one line saying what changed.  No napari or Qt here.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import secrets
import shutil
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import filelock

from ..io.atomic import atomic_write_text
from .fingerprint import Fingerprint, difference, fingerprint

FORMAT = "napari-autosam-project"
#: The format version this code writes; it reads this and older ones.
VERSION = 1
RECORD = "project.json"
LOCK = RECORD + ".lock"
#: Seconds to wait for another process holding the project's lock.
LOCK_TIMEOUT = 60.0
#: What a slide may keep besides its labels (kind → file name in its folder).
OUTPUTS = {"review": "review.csv", "measurements": "objects.geojson"}
_ID = re.compile(r"^[A-Za-z0-9._-]+$")


class ProjectError(ValueError):
    """A project, or a slide of it, that cannot be used as asked; the message is one line."""


class SlideChanged(ProjectError):
    """A slide's file was replaced or rewritten since it was added."""


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ProjectSlide:
    """One slide of a project, as ``project.json`` records it.

    Attributes
    ----------
    id : the slide's folder name under ``slides/`` (its stem and a few random characters)
    path : the slide's absolute path when it was added (or last relinked)
    relative : the same path relative to the project folder (used when the project moved with its slides)
    fingerprint : size, modification time and hash of the file (see :mod:`.fingerprint`)
    added : ISO time stamp
    resolution : the working resolution the slide was last segmented at (``Resolution.to_dict``), or None
    outputs : kind → file inside the slide's folder (``review``, ``measurements``)
    """

    id: str
    path: str
    relative: str | None
    fingerprint: Fingerprint
    added: str
    resolution: dict | None = None
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.path).name

    def to_json(self) -> dict:
        return {"id": self.id, "path": self.path, "relative": self.relative, "fingerprint": self.fingerprint.to_json(),
                "added": self.added, "resolution": self.resolution, "outputs": dict(self.outputs)}

    @classmethod
    def from_json(cls, data) -> ProjectSlide:
        if not isinstance(data, dict) or not isinstance(data.get("id"), str) or not isinstance(data.get("path"), str):
            raise ValueError(f"a slide entry must have an id and a path, got {str(data)[:80]}")
        if not _ID.match(data["id"]):
            raise ValueError(f"slide id {data['id']!r} is not a plain folder name")
        outputs = data.get("outputs") or {}
        return cls(data["id"], data["path"], data.get("relative"), Fingerprint.from_json(data.get("fingerprint")),
                   str(data.get("added", "")), data.get("resolution"),
                   {str(k): str(v) for k, v in outputs.items() if k in OUTPUTS})


def _relative(path: Path, root: Path) -> str | None:
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:  # another drive on Windows
        return None


def _safe_stem(path: Path) -> str:
    from ..io.slides import slide_stem

    stem = slide_stem(path)
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip(".") or "slide"


class Project:
    """A project folder (see the module docstring); :meth:`create` a new one or :meth:`open` one."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().absolute()
        self._thread_lock = threading.RLock()

    # ------------------------------------------------------------------ create / open

    @classmethod
    def create(cls, root: str | os.PathLike) -> Project:
        """A new project in ``root`` (made if missing; it must not be a project already)."""
        project = cls(root)
        if project.record_path.exists():
            raise ProjectError(f"{project.root} is already a project; open it instead")
        if project.root.exists() and not project.root.is_dir():
            raise ProjectError(f"{project.root} is a file, not a folder")
        with project._locked():
            if not project.record_path.exists():
                project._write({"format": FORMAT, "version": VERSION, "created": _now(), "slides": []})
        return project

    @classmethod
    def open(cls, root: str | os.PathLike) -> Project:
        """An existing project; :class:`ProjectError` (one line) for a folder that is not one."""
        project = cls(root)
        if not project.record_path.is_file():
            raise ProjectError(f"{project.root} is not a napari-autosam project (no {RECORD}); "
                               "create one with `napari-autosam project create`")
        project._read()  # checks the format now
        return project

    @property
    def record_path(self) -> Path:
        return self.root / RECORD

    @contextlib.contextmanager
    def _locked(self):
        """No other thread or process changes the project inside the block."""
        self.root.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(self.root / LOCK), timeout=LOCK_TIMEOUT)
        try:
            with self._thread_lock, lock:
                yield
        except filelock.Timeout:
            raise ProjectError(f"the project {self.root} is locked by another process "
                               f"(waited {LOCK_TIMEOUT:.0f} s for {lock.lock_file})") from None

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ProjectError(f"{self.root} is not a napari-autosam project (no {RECORD})") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ProjectError(f"{self.record_path} is unreadable: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("slides"), list):
            raise ProjectError(f"{self.record_path} is not a napari-autosam project file "
                               f"(expected format {FORMAT!r} and a list of slides)")
        version = data.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise ProjectError(f"{self.record_path} has format version {version!r}; this napari-autosam reads "
                               f"versions up to {VERSION}: update napari-autosam to open it")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        data = {**data, "version": VERSION}
        atomic_write_text(self.record_path, json.dumps(data, indent=1, ensure_ascii=False) + "\n")

    @contextlib.contextmanager
    def _changing(self):
        """The record, read under the lock, to change in place; written back when the block ends."""
        with self._locked():
            data = self._read()
            yield data
            self._write(data)

    # ------------------------------------------------------------------ slides

    def slides(self) -> list[ProjectSlide]:
        """The project's slides, in the order they were added."""
        out = []
        for i, item in enumerate(self._read()["slides"]):
            try:
                out.append(ProjectSlide.from_json(item))
            except ValueError as exc:
                raise ProjectError(f"{self.record_path}, slide {i}: {exc}") from None
        return out

    def slide(self, key: str | os.PathLike) -> ProjectSlide:
        """A slide by its id, its path, or its file name (when unique)."""
        key_text = str(key)
        slides = self.slides()
        for s in slides:
            if s.id == key_text:
                return s
        wanted = Path(key).expanduser().absolute()
        for s in slides:
            if Path(s.path) == wanted or (s.relative and (self.root / s.relative).absolute() == wanted):
                return s
        named = [s for s in slides if s.name == key_text]
        if len(named) == 1:
            return named[0]
        known = ", ".join(s.id for s in slides) or "none"
        raise ProjectError(f"{key_text!r} is not a slide of the project {self.root} (its slides: {known})")

    def find(self, path: str | os.PathLike | None) -> ProjectSlide | None:
        """The slide at ``path`` (the file a layer was opened from), or None."""
        if not path:
            return None
        wanted = Path(path).expanduser().absolute()
        for s in self.slides():
            if Path(s.path) == wanted or (s.relative and (self.root / s.relative).absolute() == wanted):
                return s
        return None

    def add(self, path: str | os.PathLike) -> ProjectSlide:
        """Add a slide file (or slide folder); adding one that is already there returns it."""
        path = Path(path).expanduser().absolute()
        if not path.exists():
            raise ProjectError(f"no slide at {path}")
        existing = self.find(path)
        if existing is not None:
            return existing
        print_ = fingerprint(path)  # outside the lock: it reads the file
        slide = ProjectSlide(f"{_safe_stem(path)}-{secrets.token_hex(3)}", str(path), _relative(path, self.root),
                             print_, _now())
        with self._changing() as data:
            for item in data["slides"]:
                if item.get("path") == str(path):  # another process added it meanwhile
                    return ProjectSlide.from_json(item)
            data["slides"].append(slide.to_json())
        return slide

    def _update(self, slide_id: str, **changes) -> ProjectSlide:
        with self._changing() as data:
            for i, item in enumerate(data["slides"]):
                if item.get("id") == slide_id:
                    slide = replace(ProjectSlide.from_json(item), **changes)
                    data["slides"][i] = slide.to_json()
                    return slide
        raise ProjectError(f"{slide_id!r} is no longer a slide of the project {self.root}")

    def remove(self, key: str | os.PathLike) -> tuple[ProjectSlide, list[Path]]:
        """Take a slide out of the project and delete what the project wrote for it (labels, outputs, corrections).

        The slide file itself is never touched.  Returns the slide and the paths removed.
        """
        slide = self.slide(key)
        with self._changing() as data:
            data["slides"] = [item for item in data["slides"] if item.get("id") != slide.id]
        removed = []
        folder = self.slide_dir(slide.id)
        if folder.exists():
            shutil.rmtree(folder)
            removed.append(folder)
        entries = self.annotations.discard(lambda e: e.extra.get("project_slide") == slide.id)
        removed += [self.annotations.root / e.mask for e in entries]
        return slide, removed

    def locate(self, slide: ProjectSlide) -> Path:
        """The slide's file now: its recorded path, else the same place relative to the project (moved together)."""
        recorded = Path(slide.path)
        if recorded.exists():
            return recorded
        if slide.relative is not None and (self.root / slide.relative).exists():
            return (self.root / slide.relative).resolve()
        raise ProjectError(f"slide {slide.id}: its file is gone from {slide.path}"
                           + (f" (and from {self.root / slide.relative})" if slide.relative else "")
                           + f"; point the project at it with `napari-autosam project relink {self.root} "
                           f"{slide.id} NEW_PATH`")

    def check(self, key: str | os.PathLike) -> Path:
        """The slide's file, after checking it is the one that was added; :class:`SlideChanged` when not.

        A file that only got a new modification time (copied) is accepted and the time is recorded.
        """
        slide = self.slide(key)
        path = self.locate(slide)
        recorded = slide.fingerprint
        stat = path.stat()
        if str(path) == slide.path and path.is_file() and (stat.st_size, stat.st_mtime) == (recorded.size,
                                                                                           recorded.mtime):
            return path  # untouched since it was fingerprinted: no need to read it
        now = fingerprint(path)
        changed = difference(recorded, now)
        if changed:
            raise SlideChanged(f"slide {slide.id} ({path}) is not the file that was added on "
                               f"{slide.added[:10]}: {changed}; if the new file is meant, remove the slide and add it again")
        if now.mtime != recorded.mtime or str(path) != slide.path:
            self._update(slide.id, fingerprint=now, path=str(path), relative=_relative(path, self.root))
        return path

    def relink(self, key: str | os.PathLike, new_path: str | os.PathLike) -> ProjectSlide:
        """Point a slide at its file's new place; the file must be the same (size and hash)."""
        slide = self.slide(key)
        new_path = Path(new_path).expanduser().absolute()
        if not new_path.exists():
            raise ProjectError(f"no slide at {new_path}")
        now = fingerprint(new_path)
        changed = difference(slide.fingerprint, now)
        if changed:
            raise SlideChanged(f"{new_path} is not slide {slide.id}: {changed}")
        return self._update(slide.id, path=str(new_path), relative=_relative(new_path, self.root), fingerprint=now)

    # ------------------------------------------------------------------ what a slide keeps

    def slide_dir(self, slide_id: str) -> Path:
        return self.root / "slides" / slide_id

    def labels_dir(self, key: str | os.PathLike) -> Path:
        """The folder of a slide's OME-Zarr label images (``labels_zarr.labels_path(folder, stem, role)``)."""
        return self.slide_dir(self.slide(key).id) / "labels"

    def labels_lock(self, key: str | os.PathLike) -> filelock.BaseFileLock:
        """The lock two processes writing into one slide's labels take (chunks are read-modify-written)."""
        folder = self.slide_dir(self.slide(key).id)
        folder.mkdir(parents=True, exist_ok=True)
        return filelock.FileLock(str(folder / "labels.lock"), timeout=LOCK_TIMEOUT)

    def set_resolution(self, key: str | os.PathLike, resolution: dict | None) -> ProjectSlide:
        """Record the working resolution the slide's labels are at (``Resolution.to_dict()``)."""
        return self._update(self.slide(key).id, resolution=dict(resolution) if resolution else None)

    def output_path(self, key: str | os.PathLike, kind: str) -> Path:
        """Where a slide's ``kind`` (``review`` or ``measurements``) goes by default."""
        if kind not in OUTPUTS:
            raise ProjectError(f"unknown slide output {kind!r}; one of {', '.join(OUTPUTS)}")
        return self.slide_dir(self.slide(key).id) / OUTPUTS[kind]

    def record_output(self, key: str | os.PathLike, kind: str, path: str | os.PathLike | None = None) -> ProjectSlide:
        """Note that the slide's ``kind`` file was written: at :meth:`output_path`, or at ``path`` inside its folder."""
        slide = self.slide(key)
        folder = self.slide_dir(slide.id)
        path = Path(path) if path is not None else self.output_path(slide.id, kind)
        if kind not in OUTPUTS or not path.absolute().is_relative_to(folder.absolute()):
            raise ProjectError(f"a slide's {kind!r} output must be one of {', '.join(OUTPUTS)}, inside {folder}")
        if not path.exists():
            raise ProjectError(f"slide {slide.id} has no {kind} file at {path}")
        relative = path.absolute().relative_to(folder.absolute()).as_posix()
        return self._update(slide.id, outputs={**slide.outputs, kind: relative})

    def note_labels(self, key: str | os.PathLike) -> ProjectSlide:
        """After segmenting a slide into :meth:`labels_dir`: record the labels' working resolution, and its
        GeoJSON objects (``<stem>_*.geojson`` beside the labels) as its measurements."""
        from ..slide_regions import stored_labels

        slide = self.slide(key)
        folder = self.labels_dir(slide.id)
        suffix = "_autosam.ome.zarr"
        stems = [p.name[: -len(suffix)] for p in sorted(folder.glob("*" + suffix))] if folder.is_dir() else []
        if not stems:
            return slide
        found = stored_labels(folder, stems[0])
        if "autosam" in found and found["autosam"][1].get("resolution"):
            facts = {k: v for k, v in found["autosam"][1]["resolution"].items() if v is not None}
            slide = self.set_resolution(slide.id, facts)
        objects = sorted(folder.glob(f"{stems[0]}_*.geojson"))
        if objects:
            slide = self.record_output(slide.id, "measurements", objects[0])
        return slide

    def keep_review(self, key: str | os.PathLike, regions, downsample: float = 1.0) -> Path:
        """Write a slide's review scores (``RegionScore`` list, working pixels at ``downsample``) into its folder."""
        from ..inference.review_scores import write_review_csv
        from ..io.geojson import Placement

        path = self.output_path(key, "review")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_review_csv(path, list(regions), placement=Placement(float(downsample)),
                         header={"downsample": f"{float(downsample):g}"})
        self.record_output(key, "review")
        return path

    def outputs(self, key: str | os.PathLike) -> dict[str, Path]:
        """The outputs a slide has (kind → path), those whose file exists."""
        slide = self.slide(key)
        folder = self.slide_dir(slide.id)
        found = {kind: (folder / name).resolve() for kind, name in slide.outputs.items()}
        return {kind: path for kind, path in found.items() if path.is_relative_to(folder.resolve()) and path.exists()}

    # ------------------------------------------------------------------ corrections and models

    @property
    def annotations(self):
        """The project's :class:`~napari_autosam.annotations.AnnotationStore` (every slide's corrections)."""
        from ..annotations import AnnotationStore
        from ..paths import annotation_dir

        return AnnotationStore(annotation_dir(self.root))

    def corrections(self, key: str | os.PathLike | None = None) -> list:
        """The newest revision of each accepted correction, of one slide or of every slide of the project."""
        ids = {self.slide(key).id} if key is not None else {s.id for s in self.slides()}
        return [e for e in self.annotations.entries() if e.extra.get("project_slide") in ids]

    def accept_region(self, key: str | os.PathLike, role_path: str | os.PathLike, box, image, mask, *,
                      resolution=None, **extra):
        """Accept an edited region of a slide: into its labels on disk and as a correction (see
        :func:`napari_autosam.slide_regions.accept_region`), tagged with the slide, under the slide's labels lock."""
        from ..slide_regions import accept_region

        slide = self.slide(key)
        with self.labels_lock(slide.id):
            return accept_region(self.annotations, role_path, box, image, mask, source=slide.path,
                                 resolution=resolution, project_slide=slide.id, **extra)

    def correction_boxes(self, key: str | os.PathLike) -> list[tuple[int, int, int, int]]:
        """Level-0 ``(y0, y1, x0, x1)`` of the slide's accepted regions (newest revision of each)."""
        return [tuple(int(v) for v in e.extra["level0_box"]) for e in self.corrections(key)
                if isinstance(e.extra.get("level0_box"), list) and len(e.extra["level0_box"]) == 4]

    def review_regions(self, key: str | os.PathLike) -> list[tuple[tuple[int, int, int, int], float]]:
        """The slide's review scores: level-0 ``(y0, y1, x0, x1)`` and score per region (empty when not reviewed)."""
        import csv

        path = self.outputs(key).get("review")
        if path is None:
            return []
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
        regions = []
        for row in csv.DictReader(lines):
            try:
                x, y, w, h = (round(float(row[k])) for k in ("x", "y", "width", "height"))
                regions.append(((y, y + h, x, x + w), float(row["score"])))
            except (KeyError, TypeError, ValueError):
                raise ProjectError(f"{path} is not a review file (x,y,width,height,score per region)") from None
        return regions

    @property
    def models_root(self) -> Path:
        """The folder of the project's model stores (one per SAM lineage)."""
        from ..paths import models_root

        return models_root(self.root)

    def model_store(self, sam=None):
        """The :class:`~napari_autosam.models.store.ModelStore` of a SAM (a name, an identity or a model)."""
        from ..models.store import ModelStore
        from ..paths import model_store_dir

        if sam is not None and not isinstance(sam, str):
            from ..sam.registry import SamIdentity, sam_identity

            sam = sam if isinstance(sam, SamIdentity) else sam_identity(sam)
        return ModelStore(model_store_dir(sam, self.root))

    def active_models(self) -> dict[str, str]:
        """SAM lineage → its active model version, for every lineage with versions."""
        from ..models.store import ModelStore

        if not self.models_root.is_dir():
            return {}
        found = {}
        for folder in sorted(p for p in self.models_root.iterdir() if p.is_dir()):
            active = ModelStore(folder).active
            if active is not None:
                found[folder.name] = active
        return found

    # ------------------------------------------------------------------ housekeeping

    def orphans(self) -> list[Path]:
        """What the project holds for slides it no longer has: slide folders and corrections' mask files."""
        known = {s.id for s in self.slides()}
        found = []
        folder = self.root / "slides"
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if p.name not in known)
        store = self.annotations
        if store.record_path.is_file():
            found += [store.root / e.mask for e in store.history()
                      if e.extra.get("project_slide") is not None and e.extra["project_slide"] not in known]
        return found

    def prune(self) -> list[Path]:
        """Remove :meth:`orphans`; returns what was removed."""
        with self._locked():
            known = {s.id for s in self.slides()}
            removed = []
            folder = self.root / "slides"
            for path in sorted(folder.iterdir()) if folder.is_dir() else []:
                if path.name not in known:
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
                    removed.append(path)
            entries = self.annotations.discard(lambda e: e.extra.get("project_slide") not in (None, *known))
            removed += [self.annotations.root / e.mask for e in entries]
        return removed

    def summary(self) -> list[dict]:
        """One row per slide for listings: id, path, state of the file, labels, corrections, outputs."""
        counts: dict[str, int] = {}
        for entry in self.annotations.entries():
            sid = entry.extra.get("project_slide")
            counts[sid] = counts.get(sid, 0) + 1
        rows = []
        for s in self.slides():
            try:
                self.check(s.id)
                state = "ok"
            except ProjectError as exc:
                state = str(exc)
            labels = self.slide_dir(s.id) / "labels"
            rows.append({"id": s.id, "path": s.path, "state": state,
                         "labels": sorted(p.name for p in labels.iterdir()) if labels.is_dir() else [],
                         "corrections": counts.get(s.id, 0), "resolution": s.resolution,
                         "outputs": sorted(self.outputs(s.id))})
        return rows
