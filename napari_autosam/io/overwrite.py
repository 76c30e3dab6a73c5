"""Nothing napari-autosam writes may replace one of its inputs: every command checks its outputs here first.

A command names the files (or OME-Zarr folders) it is about to write and the
files it reads; :func:`check_outputs` refuses, before any work, an output
that is an input (the same path, a link to it, or the same file under
another name), an output whose writing would replace a folder holding an
input, and an output inside an input that is itself a folder dataset (an
OME-Zarr image).  Outputs that need not exist yet are compared by their
resolved paths.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["OverwriteError", "check_outputs"]


class OverwriteError(ValueError):
    """An output would replace or change an input."""


def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:  # not there (yet)
        return None
    return stat.st_dev, stat.st_ino


class _Inputs:
    """The inputs, indexed once: by resolved path, by file identity, and the folder datasets among them."""

    def __init__(self, inputs: Iterable[str | os.PathLike]) -> None:
        self.by_path: dict[Path, Path] = {}
        self.by_identity: dict[tuple[int, int], Path] = {}
        for given in inputs:
            given = Path(given)
            self.by_path.setdefault(_resolved(given), given)
            identity = _identity(given)
            if identity is not None:
                self.by_identity.setdefault(identity, given)
        self.folders = {path: given for path, given in self.by_path.items() if path.is_dir()}
        self.ancestors: dict[Path, Path] = {}
        for path, given in self.by_path.items():
            for parent in path.parents:
                self.ancestors.setdefault(parent, given)

    def conflict(self, output: str | os.PathLike) -> tuple[str, Path] | None:
        out = _resolved(Path(output))
        if out in self.by_path:
            return "is that input", self.by_path[out]
        identity = _identity(Path(output))
        if identity is not None and identity in self.by_identity:  # a hard link, another spelling of the name
            return "is that input", self.by_identity[identity]
        if out in self.ancestors:
            return "would replace the folder that holds that input", self.ancestors[out]
        for parent in out.parents:
            if parent in self.folders:
                return "lies inside that input (a folder dataset)", self.folders[parent]
        return None


def check_outputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike], *,
                  option: str = "--out") -> None:
    """Raise :class:`OverwriteError` (one line) when an output would replace or change an input.

    ``option`` names what set the outputs' place, for the message.
    """
    index = _Inputs(inputs)
    for output in outputs:
        found = index.conflict(output)
        if found:
            why, input_ = found
            raise OverwriteError(f"the output {output} {why} ({input_}): nothing is written over an input; "
                                 f"choose another {option}")
