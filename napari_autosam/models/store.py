"""Numbered model versions in a folder, so training never overwrites and rollback is a pointer move.

Layout::

    <root>/v0001.safetensors     # each training run adds the next number
    <root>/v0002.safetensors
    <root>/active.json           # {"active": "v0002"}: the version in use
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..io.atomic import atomic_write_text
from .checkpoint import read_metadata

_VERSION = re.compile(r"^v(\d{4,})\.safetensors$")


class ModelStore:
    """The versions of one model (one prompt generator lineage) on disk."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

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

        The claim is an empty placeholder created exclusively, so two runs
        never pick the same number; :meth:`commit` writes over it.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        number = int(self.versions()[-1][1:]) + 1 if self.versions() else 1
        while True:
            name = f"v{number:04d}"
            placeholder = self.root / f".{name}.reserved"
            try:
                fd = os.open(placeholder, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                number += 1
                continue
            os.close(fd)
            if (self.root / f"{name}.safetensors").exists():
                number += 1
                continue
            return name, self.root / f"{name}.safetensors"

    def release(self, version: str) -> None:
        """Drop the reservation marker of a version (after it is written or abandoned)."""
        (self.root / f".{version}.reserved").unlink(missing_ok=True)

    @property
    def active(self) -> str | None:
        """The version in use: the one ``active.json`` names, else the newest."""
        pointer = self.root / "active.json"
        if pointer.is_file():
            name = json.loads(pointer.read_text()).get("active")
            if name in self.versions():
                return name
        versions = self.versions()
        return versions[-1] if versions else None

    def activate(self, version: str) -> Path:
        """Make ``version`` the one in use (a rollback is activating an older one)."""
        path = self.path(version)
        atomic_write_text(self.root / "active.json", json.dumps({"active": version}))
        return path

    def describe(self) -> list[dict]:
        """One dict per version: name, path, created, parent and metrics from its metadata."""
        rows = []
        for name in self.versions():
            meta = read_metadata(self.root / f"{name}.safetensors")
            rows.append({"version": name, "path": str(self.root / f"{name}.safetensors"), **{
                k: meta.get(k) for k in ("created", "parent", "metrics", "sam_variant", "trained_on_count",
                                        "validation", "val_kind")}})
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

    trained_for = read_metadata(resolve_model_path(model)).get("sam_variant") if model and not requested else None
    return choose_sam(requested, trained_for)
