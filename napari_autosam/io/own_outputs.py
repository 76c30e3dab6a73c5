"""The package knows its own outputs: a mask or label image napari-autosam wrote is not taken for an input.

``segment data/*.tif --out data`` run twice would otherwise segment the
masks of the first run (``a_autosam.tif`` → ``a_autosam_autosam.tif``), and
a folder of results is full of them.  An input is recognised as an output
when

* it is an OME-Zarr label image carrying the package's metadata (the
  ``autosam`` facts beside ``image-label``), or
* its name ends in one of the output roles (``_autosam.tif``, ``_h.tif``,
  ``_instances.tif``, …) *and* its contents look like that role: one channel
  of 0/1 bytes for a mask, integer labels for instances and classes, floats
  in [0, 1] for probabilities (read from its header and one small window).

A user's image that happens to end in ``_h.tif`` but holds colour or grey
levels is segmented as usual.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["MASK_ROLES", "own_output"]

#: Output roles of TIFFs (``<stem>_<role>.tif``) and what each holds: "mask" 0/1, "labels" ids, "prob" [0, 1].
MASK_ROLES = {"autosam": "mask", "h": "mask", "instances": "labels", "classes": "labels", "h_classes": "labels",
              "autosam_prob": "prob", "h_prob": "prob"}
_WHAT = {"mask": "a mask", "labels": "a label image", "prob": "a probability map"}
#: The window read to tell a mask from an image (pixels per side, from the top left).
_PEEK = 256


def _zarr_attributes(folder: Path) -> dict:
    for name in (".zattrs", "zarr.json"):
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if name == "zarr.json":
            data = data.get("attributes", {})
            data = data.get("ome", data)
        return data if isinstance(data, dict) else {}
    return {}


def _role_of(name: str) -> str | None:
    lower = name.lower()
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if lower.endswith(suffix):
            stem = lower[: -len(suffix)]
            break
    else:
        return None
    # the longest role first: "a_h_prob" is an h_prob, not an h of "a_h_pro"
    for role in sorted(MASK_ROLES, key=len, reverse=True):
        if stem.endswith(f"_{role}") and len(stem) > len(role) + 1:
            return role
    return None


def _looks_like(path: Path, kind: str) -> bool:
    """Whether the TIFF's first image holds what an output of ``kind`` holds (header and one small window)."""
    import numpy as np
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            if page.samplesperpixel != 1:
                return False  # colour or several channels: an image
            dtype = np.dtype(page.dtype)
            big = int(np.prod(page.shape)) > 4096 * 4096
            window = _peek(path) if big else page.asarray()[..., :_PEEK, :_PEEK]
    except Exception:  # not readable as TIFF: the reader will say why
        return False
    if kind == "mask":
        return dtype == np.uint8 and int(window.max(initial=0)) <= 1
    if kind == "labels":
        return dtype.kind in "iu" and int(window.min(initial=0)) >= 0
    return dtype.kind == "f" and float(window.min(initial=0)) >= 0.0 and float(window.max(initial=0)) <= 1.0


def _peek(path: Path):
    """The top-left window of a big TIFF, read without loading the image."""
    import numpy as np
    import tifffile
    import zarr

    store = tifffile.imread(path, aszarr=True, key=0)
    try:
        array = zarr.open(store, mode="r")
        if not hasattr(array, "shape"):  # a pyramid: its first level
            array = array[sorted(array.array_keys())[0]]
        return np.asarray(array[(..., slice(0, _PEEK), slice(0, _PEEK))])
    finally:
        store.close()


def own_output(path: str | os.PathLike) -> str | None:
    """What ``path`` is if napari-autosam wrote it (a few words), else None."""
    path = Path(path)
    if path.is_dir():
        attrs = _zarr_attributes(path)
        if "autosam" in attrs and "image-label" in attrs:
            return "an OME-Zarr label image napari-autosam wrote"
        return None
    role = _role_of(path.name)
    if role is not None and path.is_file() and _looks_like(path, MASK_ROLES[role]):
        return f"{_WHAT[MASK_ROLES[role]]} napari-autosam wrote (<stem>_{role})"
    return None
