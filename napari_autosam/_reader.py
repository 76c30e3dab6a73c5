"""napari reader: whole slides, TIFF / OME-TIFF (2D, RGB, multichannel, 3D; big or pyramidal files lazily), PNG, JPEG.

Whole slides (``.svs``, ``.ndpi``, ``.scn``, ``.mrxs``, ``.vms``, ``.bif``,
``.svslide``, pyramidal TIFF/OME-TIFF and OME-Zarr folders) open through
:func:`napari_autosam.io.slides.open_slide` as lazy multiscale layers, level
0 first, with ``scale`` in µm/px where the slide records it.

The reader returns napari layer-data tuples and never imports napari or Qt.
It answers ``None`` for paths it does not handle (or cannot open), so napari
can ask the next reader.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .io.images import TIFF_SUFFIXES, image_stem, open_lazy, pyramid_levels, read_image
from .io.normalize import image_kind
from .io.slides import OPENSLIDE_SUFFIXES, Slide, SlideReadError, open_slide, slide_stem

#: Slide formats that are not plain TIFF (always opened as slides).
SLIDE_ONLY = OPENSLIDE_SUFFIXES + (".svs",)
#: File endings this reader takes (lower case; ``.ome.tif`` ends in ``.tif``).
SUFFIXES = TIFF_SUFFIXES + (".png", ".jpg", ".jpeg") + SLIDE_ONLY
#: Files bigger than this are opened lazily (memory map or zarr) instead of read whole.
LAZY_BYTES = 256 * 2**20

LayerData = tuple[Any, dict[str, Any], str]


def _is_ngff(path: Path) -> bool:
    """A folder open_slide reads (OME-Zarr with ``multiscales`` metadata, or DICOM ``.dcm`` files); others are left to other readers."""
    try:
        open_slide(path).close()
    except SlideReadError:
        return False
    return True


def _handles(path: str | os.PathLike) -> bool:
    path = Path(path)
    if path.is_dir():
        return _is_ngff(path)
    if path.name.lower().endswith(SLIDE_ONLY) and path.is_file():
        try:  # a corrupt slide: decline (napari then says no reader can open it)
            open_slide(path).close()
        except SlideReadError:
            return False
        return True
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


def _is_slide(path: Path) -> bool:
    """Slide formats, OME-Zarr folders and TIFF pyramids go through :func:`open_slide`."""
    if path.is_dir() or path.name.lower().endswith(SLIDE_ONLY):
        return True
    if not path.name.lower().endswith(TIFF_SUFFIXES):
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return len(tif.series[0].levels) > 1
    except Exception:
        return False


def slide_layer(slide: Slide) -> LayerData:
    """One lazy multiscale image layer (level 0 first) with ``scale`` in µm/px where known.

    The metadata keeps ``source``, ``kind``, ``vendor``, ``mpp``,
    ``objective_power``, ``downsamples`` and ``units`` ("µm", or
    "uncalibrated: pixels" when the slide records no pixel size).
    """
    base = slide.levels[0]
    kind = image_kind(base.shape, base.dtype)
    rgb = kind in ("rgb", "rgba")
    spatial = list(slide.mpp) if slide.mpp else [1.0, 1.0]
    extra = base.ndim - 2 - (1 if rgb else 0)
    kwargs: dict[str, Any] = {
        "name": slide_stem(slide.path),
        "metadata": {**slide.metadata(), "kind": kind},
        "rgb": rgb,
        "scale": [1.0] * extra + spatial,
    }
    if slide.mpp:
        kwargs["units"] = ["pixel"] * extra + ["µm", "µm"]
    if len(slide.levels) > 1:
        kwargs["multiscale"] = True
        return slide.levels, kwargs, "image"
    return base, kwargs, "image"


def read_image_layers(path: str | os.PathLike) -> list[LayerData]:
    """Read one file as napari image layer data.

    * ``(Y, X)`` and ``(Z, Y, X)``: one grayscale layer (a stack gets a slider);
    * ``(Y, X, 3|4)`` and ``(Z, Y, X, 3|4)``: one RGB layer;
    * multichannel ``(C, Y, X)`` or ``(Y, X, C)`` held in memory: one layer per
      channel, blended (napari's ``channel_axis``);
    * whole slides and pyramidal TIFF: one multiscale layer (levels largest first), read lazily
      (:func:`slide_layer`).

    Every layer's metadata records ``source`` (the file) and ``kind``.
    """
    path = Path(path)
    if _is_slide(path):
        return [slide_layer(open_slide(path))]
    data, multiscale = _pixels(path)
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
