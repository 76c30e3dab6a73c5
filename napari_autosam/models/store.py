"""Numbered model versions in a folder, so training never overwrites and rollback is a pointer move.

Layout::

    <root>/v0001.safetensors     # each training run adds the next number
    <root>/v0002.safetensors
    <root>/active.json           # {"active": "v0002"}: the version in use
    <root>/store.lock            # cross-process lock for reservations and the pointer

A training run claims its number with a placeholder ``.vNNNN.reserved`` that
it holds locked (an OS file lock, released when the process ends, however it
ends) until the version is written.  A placeholder nobody holds, and the
temporary files of a version written by a process that died, are removed
the next time a version is reserved (:meth:`ModelStore.clean`), so a killed
run never leaves debris or makes numbers skip ahead; placeholders are never
counted as versions.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import filelock

from ..io.atomic import atomic_write_text
from .checkpoint import read_metadata

_VERSION = re.compile(r"^v(\d{4,})\.safetensors$")
_RESERVED = re.compile(r"^\.(v\d{4,})\.reserved$")
_PART = re.compile(r"^\.(v\d{4,}\.safetensors|active\.json)\..*\.part")
POINTER = "active.json"
LOCK = "store.lock"
#: Seconds to wait for another process working on the same store.
LOCK_TIMEOUT = 60.0


class ModelStoreError(ValueError):
    """A model store whose files cannot be used as they are; the message names the file."""


class ModelStore:
    """The versions of one model (one prompt generator lineage) on disk."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._held: dict[str, filelock.BaseFileLock] = {}

    def _lock(self) -> filelock.BaseFileLock:
        self.root.mkdir(parents=True, exist_ok=True)
        return filelock.FileLock(str(self.root / LOCK), timeout=LOCK_TIMEOUT)

    def clean(self) -> list[Path]:
        """Remove placeholders and temporary files whose owner process is gone; return what went.

        Takes the store's lock; a placeholder held by a live run stays, and
        so do the temporary files of the version it is writing.
        """
        if not self.root.is_dir():
            return []
        removed = []
        with self._lock():
            live = set(self._held)  # this process's own claims
            for path in self.root.iterdir():
                match = _RESERVED.match(path.name)
                if not match or match.group(1) in live:
                    continue
                probe = filelock.FileLock(str(path), timeout=0)
                try:
                    probe.acquire()
                except filelock.Timeout:
                    live.add(match.group(1))  # a running training holds it
                    continue
                try:
                    path.unlink(missing_ok=True)
                    removed.append(path)
                finally:
                    probe.release()
            for path in self.root.iterdir():  # temporary files of versions (or the pointer) nobody is writing
                match = _PART.match(path.name)
                if match and match.group(1).split(".")[0] not in live:
                    path.unlink(missing_ok=True)
                    removed.append(path)
        return removed

    def versions(self) -> list[str]:
        """Version names (``"v0001"``, …) in order, oldest first."""
        if not self.root.is_dir():
            return []
        found = [m.group(0) for p in self.root.iterdir() if (m := _VERSION.match(p.name))]
        return sorted((name[: -len(".safetensors")] for name in found), key=lambda v: int(v[1:]))

    def path(self, version: str) -> Path:
        path = self.root / f"{version}.safetensors"
        if not path.is_file():
            raise FileNotFoundError(f"model version {version!r} not found in {self.root}; have {self.versions()}")
        return path

    def reserve(self) -> tuple[str, Path]:
        """Claim the next free version name; returns ``(name, path)``.

        The claim is a placeholder ``.vNNNN.reserved`` created exclusively
        and held locked by this process until :meth:`release`, so two runs
        never pick the same number and a dead run's claim is recognised
        (and cleaned, see :meth:`clean`) by the next one.
        """
        self.clean()
        with self._lock():
            versions = self.versions()
            number = int(versions[-1][1:]) + 1 if versions else 1
            while True:
                name = f"v{number:04d}"
                placeholder = self.root / f".{name}.reserved"
                if (self.root / f"{name}.safetensors").exists() or placeholder.exists():
                    number += 1
                    continue
                held = filelock.FileLock(str(placeholder), timeout=0)
                held.acquire()
                self._held[name] = held
                return name, self.root / f"{name}.safetensors"

    def release(self, version: str) -> None:
        """Drop the reservation of a version (after it is written or abandoned)."""
        held = self._held.pop(version, None)
        placeholder = self.root / f".{version}.reserved"
        if held is None:
            placeholder.unlink(missing_ok=True)
            return
        with self._lock():
            placeholder.unlink(missing_ok=True)
            held.release()

    @property
    def active(self) -> str | None:
        """The version in use: the one ``active.json`` names, else (no pointer yet) the newest.

        Raises
        ------
        ModelStoreError
            ``active.json`` is not JSON, not ``{"active": "vNNNN"}``, or names
            a version that is not in the store.
        """
        pointer = self.root / POINTER
        versions = self.versions()
        if not pointer.is_file():
            return versions[-1] if versions else None
        expected = 'expected {"active": "vNNNN"} naming one of ' + (", ".join(versions) or "no versions")
        try:
            data = json.loads(pointer.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelStoreError(f"{pointer} is not readable JSON ({exc}); {expected}") from None
        name = data.get("active") if isinstance(data, dict) else None
        if not isinstance(name, str):
            raise ModelStoreError(f"{pointer} holds {json.dumps(data)[:80]}; {expected}")
        if name not in versions:
            raise ModelStoreError(f"{pointer} names {name!r}, which is not in the store; {expected}")
        return name

    def activate(self, version: str) -> Path:
        """Make ``version`` the one in use (a rollback is activating an older one)."""
        path = self.path(version)
        with self._lock():
            atomic_write_text(self.root / POINTER, json.dumps({"active": version}))
        return path

    def describe(self) -> list[dict]:
        """One dict per version: name, path, created, parent and metrics from its metadata."""
        rows = []
        for name in self.versions():
            meta = read_metadata(self.root / f"{name}.safetensors")
            rows.append({"version": name, "path": str(self.root / f"{name}.safetensors"), **{
                k: meta.get(k) for k in ("created", "parent", "metrics", "sam_variant", "trained_on_count",
                                        "validation", "validation_kind", "classes")}})
        return rows




def resolve_model_path(path: str | os.PathLike) -> Path:
    """A checkpoint file as given, or a model-store folder's active version."""
    path = Path(path).expanduser()
    if path.is_dir():
        store = ModelStore(path)
        if store.active is None:
            raise FileNotFoundError(f"{path} is a folder without model versions")
        return store.path(store.active)
    if not path.is_file():
        raise FileNotFoundError(f"no model checkpoint at {path}")
    return path


def sam_for_model(requested: str | os.PathLike | None, model: str | os.PathLike | None) -> str:
    """The SAM to load for ``model`` (a checkpoint or a model-store folder, or None).

    ``requested`` (e.g. ``--sam``) wins; else the SAM the model was trained
    for; else the default SAM.  ``segment``, ``evaluate`` and ``train --init``
    all decide this way.
    """
    from ..sam.registry import choose_sam

    meta = read_metadata(resolve_model_path(model)) if model and not requested else {}
    trained_for = meta.get("sam_name") or meta.get("sam_variant")  # a domain SAM by its name
    return choose_sam(requested, trained_for)
