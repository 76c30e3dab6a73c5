"""Read PyTorch weight files (``torch.save`` state dicts) safely, with errors a user can act on.

Only tensors and plain containers are unpickled (``weights_only=True``): a
file holding code is refused, never run.  Every failure is a
:class:`WeightsFileError` naming the file and what it should be; torch's
own advice to retry with ``weights_only=False`` is never passed on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch


class WeightsFileError(ValueError):
    """A file that is not the PyTorch weights file it should be; the message names it."""


def _why(path: Path, error: BaseException, what: str) -> str:
    text = str(error)
    if "Weights only load failed" in text or "Unsupported global" in text or "Unsupported operand" in text:
        return (f"{path} is not a {what}: it holds pickled Python objects other than tensors, which are refused "
                "for safety (only plain weights are loaded)")
    if isinstance(error, (EOFError, RuntimeError)) and ("EOF" in text or "central directory" in text
                                                         or "failed finding" in text or isinstance(error, EOFError)):
        return f"{path} is not a {what}: the file is cut off or damaged"
    return f"{path} is not a {what}: it is not a PyTorch weights file"


def read_state_dict(path: str | os.PathLike, what: str = "PyTorch weights file", *,
                    mmap: bool = False, unwrap=None) -> dict[str, torch.Tensor]:
    """The ``{name: tensor}`` dict saved in ``path``, checked to hold tensors only.

    Parameters
    ----------
    path : the file (``torch.save`` of a state dict, or of ``{"model"|"state_dict": state dict}``).
    what : how the file is named in errors, e.g. ``"SAM checkpoint"``.
    mmap : memory-map the tensors (paged in as used, not copied) when the file is in
        torch's zip format; other files are read as usual.
    unwrap : callable, optional
        Picks the state dict out of a loaded dict of another layout (e.g. SAM's ``model_state``).

    Raises
    ------
    FileNotFoundError
        No such file.
    WeightsFileError
        An empty, damaged or foreign file, one with pickled code, or one holding no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    if path.stat().st_size == 0:
        raise WeightsFileError(f"{path} is not a {what}: the file is empty (0 bytes)")
    try:
        state = None
        if mmap:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception:  # e.g. the legacy (pre-zip) format: read it, or report it, as usual below
                state = None
        if state is None:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise
    except Exception as exc:  # pickle errors, truncated archives, random bytes: all mean "not weights"
        raise WeightsFileError(_why(path, exc, what)) from None
    for key in ("model", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if unwrap is not None and isinstance(state, Mapping):
        state = unwrap(dict(state))
    if not isinstance(state, Mapping) or not state:
        raise WeightsFileError(f"{path} is not a {what}: it holds a {type(state).__name__}, "
                               "not a dict of named tensors")
    wrong = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if wrong:
        raise WeightsFileError(f"{path} is not a {what}: entries {', '.join(wrong[:5])} are not tensors")
    return dict(state)
