"""napari writer: a Labels layer to a (zlib-compressed) TIFF, atomically.  No napari or Qt here."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .io.images import write_tiff


def _label_dtype(data: np.ndarray) -> np.dtype:
    top = int(data.max()) if data.size else 0
    low = int(data.min()) if data.size else 0
    if low < 0:
        return np.dtype(np.int32)
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def write_labels(path: str | os.PathLike, data: Any, meta: dict[str, Any] | None = None) -> list[str]:
    """Write one Labels layer's data to ``path`` and return ``[path]``.

    A path without a TIFF ending gets ``.tif``.  Labels are stored in the
    smallest unsigned integer type that holds them; multiscale labels are
    written at full resolution; stacks keep all their slices.
    """
    path = Path(path)
    if not path.name.lower().endswith((".tif", ".tiff")):
        path = path.with_name(path.name + ".tif")
    if meta and meta.get("multiscale") and isinstance(data, (list, tuple)):
        data = data[0]
    array = np.asarray(data)
    if array.dtype.kind not in "biu":
        raise ValueError(f"labels must be integers, got dtype {array.dtype}")
    write_tiff(path, array.astype(_label_dtype(array), copy=False))
    return [str(path)]
