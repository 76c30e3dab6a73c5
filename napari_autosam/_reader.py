"""napari reader: TIFF / OME-TIFF (2D, RGB, multichannel, 3D; big or pyramidal files lazily), PNG, JPEG.

The reader returns napari layer-data tuples and never imports napari or Qt.
It answers ``None`` for paths it does not handle, so napari can ask the next
reader.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .io.images import TIFF_SUFFIXES, ImageReadError, image_stem, open_lazy, pyramid_levels, read_image
from .io.normalize import image_kind

#: File endings this reader takes (lower case; ``.ome.tif`` ends in ``.tif``).
SUFFIXES = TIFF_SUFFIXES + (".png", ".jpg", ".jpeg")
#: Files bigger than this are opened lazily (memory map or zarr) instead of read whole.
LAZY_BYTES = 256 * 2**20

LayerData = tuple[Any, dict[str, Any], str]


def _handles(path: str | os.PathLike) -> bool:
    path = Path(path)
    if not path.name.lower().endswith(SUFFIXES) or not path.is_file():
        return False
    if path.name.lower().endswith(TIFF_SUFFIXES):
        import tifffile

        try:  # a quick look at the header: a broken TIFF is left to other readers
            with tifffile.TiffFile(path) as tif:
                return len(tif.series) > 0
        except Exception:
            return False
    return True


def napari_get_reader(path: str | list[str]):
    """Return :func:`read_images` if every path is an image this plugin reads, else None."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(_handles(p) for p in paths):
        return None
    return read_images


def read_images(path: str | list[str]) -> list[LayerData]:
    """Layer-data tuples for one path or a list of paths."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [layer for p in paths for layer in read_image_layers(p)]


def _pixels(path: Path) -> tuple[Any, bool]:
    """The image data and whether it is multiscale: pyramid levels, a lazy array, or a numpy array."""
    if path.name.lower().endswith(TIFF_SUFFIXES):
        levels = pyramid_levels(path)
        if len(levels) > 1:
            return levels, True
        if path.stat().st_size > LAZY_BYTES:
            return open_lazy(path), False
    return read_image(path), False


def read_image_layers(path: str | os.PathLike) -> list[LayerData]:
    """Read one file as napari image layer data.

    * ``(Y, X)`` and ``(Z, Y, X)``: one grayscale layer (a stack gets a slider);
    * ``(Y, X, 3|4)`` and ``(Z, Y, X, 3|4)``: one RGB layer;
    * multichannel ``(C, Y, X)`` or ``(Y, X, C)`` held in memory: one layer per
      channel, blended (napari's ``channel_axis``);
    * pyramidal TIFF: one multiscale layer (levels largest first), read lazily.

    Every layer's metadata records ``source`` (the file) and ``kind``.
    """
    path = Path(path)
    try:
        data, multiscale = _pixels(path)
    except ImageReadError:
        raise
    base = data[0] if multiscale else data
    kind = image_kind(base.shape, base.dtype)
    kwargs: dict[str, Any] = {
        "name": image_stem(path),
        "metadata": {"source": str(path), "kind": kind},
    }
    if multiscale:
        kwargs["multiscale"] = True
    if kind in ("rgb", "rgba", "stack_rgb") and base.shape[-1] in (3, 4):
        kwargs["rgb"] = True
    elif kind == "stack_rgb" or (kind == "multichannel" and isinstance(data, np.ndarray)):
        axis = base.ndim - 1 if base.shape[-1] <= 16 and base.shape[-1] < base.shape[-2] else 0
        n_channels = base.shape[axis]
        kwargs["channel_axis"] = axis
        kwargs["name"] = [f"{image_stem(path)} [ch{c}]" for c in range(n_channels)]
        kwargs["metadata"] = [{**kwargs["metadata"], "channel": c} for c in range(n_channels)]
        kwargs["blending"] = "additive"
    else:
        kwargs["rgb"] = False
    return [(data, kwargs, "image")]
