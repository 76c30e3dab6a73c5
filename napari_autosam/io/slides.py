"""Open whole-slide images lazily: vendor formats, tiled/pyramidal TIFF, OME-TIFF and OME-Zarr.

:func:`open_slide` returns a :class:`Slide`: its pyramid levels (level 0,
the full resolution, first) as lazy array-likes that read only the pixels a
slice asks for, their downsamples relative to level 0, the physical pixel
size in µm/px where the file records one, the objective power and the
vendor.  Brightfield slides give ``Y×X×3`` ``uint8`` RGB levels.

Which library reads what:

* Aperio ``.svs`` and generic tiled ``.tif``/``.tiff`` pyramids: pixels
  through tifffile's zarr store (about 3× faster than OpenSlide's
  ``read_region`` for a 1024² window, see docs/slides.md), metadata
  (µm/px, objective power, vendor) from OpenSlide when OpenSlide recognises
  the file.  When the two disagree on the pyramid, OpenSlide's pixels are
  used.
* OME-TIFF: tifffile (pyramids in SubIFDs, which OpenSlide does not read),
  µm/px from the OME-XML ``PhysicalSizeX/Y``.
* ``.ndpi``, ``.scn``, ``.mrxs``, ``.vms``, ``.bif``, ``.svslide``:
  OpenSlide (openslide-python with the openslide-bin wheel).
* OME-Zarr (NGFF) image folders: zarr, µm/px from the ``scale`` of the
  first dataset's ``coordinateTransformations``.

Every failure is a :class:`SlideReadError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from .pyramid import MICRONS as _MICRONS
from .pyramid import Slide, SlideReadError

__all__ = [
    "OPENSLIDE_SUFFIXES",
    "SLIDE_SUFFIXES",
    "Slide",
    "SlideReadError",
    "is_slide_path",
    "open_slide",
    "slide_from_layer",
    "slide_stem",
]

#: Formats only OpenSlide reads here.
OPENSLIDE_SUFFIXES = (".ndpi", ".scn", ".mrxs", ".vms", ".bif", ".svslide")
#: TIFF-based files whose pixels tifffile reads (with OpenSlide's metadata where it knows the file).
TIFFFILE_SUFFIXES = (".ome.tiff", ".ome.tif", ".svs", ".tiff", ".tif")
#: Every file ending :func:`open_slide` takes (lower case), plus OME-Zarr folders (``.zarr``).
SLIDE_SUFFIXES = OPENSLIDE_SUFFIXES + TIFFFILE_SUFFIXES
ZARR_SUFFIXES = (".ome.zarr", ".zarr")

def slide_from_layer(levels, metadata: dict | None) -> Slide | None:
    """A :class:`Slide` over an image layer's levels, from the metadata :meth:`Slide.metadata` wrote; else None.

    Lets the widget work on the layer napari shows without opening the file again.
    """
    if not isinstance(metadata, dict) or "downsamples" not in metadata or "vendor" not in metadata:
        return None
    levels = list(levels)
    if len(levels) != len(metadata["downsamples"]):
        return None
    mpp = tuple(float(v) for v in metadata["mpp"]) if metadata.get("mpp") else None
    return Slide(Path(metadata.get("source", "layer")), levels, [float(d) for d in metadata["downsamples"]], mpp,
                 metadata.get("objective_power"), str(metadata["vendor"]), str(metadata.get("backend", "")))


def slide_stem(path: str | os.PathLike) -> str:
    """File or folder name without its slide suffix (``a.ome.zarr`` → ``a``)."""
    name = Path(path).name
    lowered = name.lower()
    suffix = next((s for s in SLIDE_SUFFIXES + ZARR_SUFFIXES if lowered.endswith(s)), None)
    return name[: len(name) - len(suffix)] if suffix else Path(path).stem


def is_slide_path(path: str | os.PathLike) -> bool:
    """True for files with a slide ending and for folders that look like OME-Zarr."""
    path = Path(path)
    if path.is_dir():
        return _is_zarr_dir(path)
    return path.name.lower().endswith(SLIDE_SUFFIXES)


def _is_zarr_dir(path: Path) -> bool:
    return path.name.lower().endswith(ZARR_SUFFIXES) or any(
        (path / marker).is_file() for marker in (".zattrs", ".zgroup", "zarr.json"))


def open_slide(path: str | os.PathLike) -> Slide:
    """Open a slide without reading its pixels.

    Parameters
    ----------
    path : a slide file (see :data:`SLIDE_SUFFIXES`) or an OME-Zarr image folder

    Raises
    ------
    SlideReadError
        Missing, unsupported, truncated or corrupt slides, and OME-Zarr
        folders without ``multiscales`` metadata.
    """
    path = Path(path)
    if not path.exists():
        raise SlideReadError(path, "no such file or folder")
    if path.is_dir():
        if not _is_zarr_dir(path):
            raise SlideReadError(path, "a folder that is not OME-Zarr (no .zattrs, .zgroup or zarr.json)")
        from .ngff import open_ngff

        return open_ngff(path)
    name = path.name.lower()
    if not name.endswith(SLIDE_SUFFIXES):
        raise SlideReadError(path, f"unsupported file type; expected one of {', '.join(SLIDE_SUFFIXES)} "
                             "or an OME-Zarr folder")
    if name.endswith(OPENSLIDE_SUFFIXES):
        from .openslide_levels import open_openslide

        return open_openslide(path)
    return _open_tiff(path)


# --------------------------------------------------------------------------- tifffile


def _open_tiff(path: Path) -> Slide:
    """TIFF-based slides: tifffile's zarr store for pixels, OpenSlide's metadata where it knows the file."""
    from .openslide_levels import open_openslide as _open_openslide
    from .openslide_levels import openslide_format, openslide_meta
    is_ome = path.name.lower().endswith((".ome.tif", ".ome.tiff"))
    vendor = None if is_ome else openslide_format(path)
    try:
        levels, tiff_meta, closer = _tifffile_levels(path)
    except Exception as error:
        if vendor is not None:  # tifffile cannot, OpenSlide may
            return _open_openslide(path)
        raise SlideReadError(path, f"not a readable TIFF slide ({type(error).__name__}: {error})") from error
    downsamples = [_downsample(levels[0].shape, level.shape) for level in levels]
    if vendor is None:
        mpp, power = tiff_meta
        return Slide(path, levels, downsamples, mpp, power, "ome-tiff" if is_ome else "tiff", "tifffile", [closer])
    import openslide

    try:
        handle = openslide.OpenSlide(str(path))
    except Exception:
        mpp, power = tiff_meta
        return Slide(path, levels, downsamples, mpp, power, "tiff", "tifffile", [closer])
    mpp, power, vendor = openslide_meta(handle)
    same = [tuple(level.shape[:2]) for level in levels] == [(h, w) for w, h in handle.level_dimensions]
    handle.close()
    if not same:  # tifffile sees another pyramid than OpenSlide: trust the slide library
        closer()
        return _open_openslide(path)
    return Slide(path, levels, downsamples, mpp or tiff_meta[0], power or tiff_meta[1], vendor, "tifffile", [closer])


def _downsample(base_shape, shape) -> float:
    """Level 0's size over this level's (mean of rows and columns; 1.0 for level 0)."""
    return float(np.mean([base_shape[0] / shape[0], base_shape[1] / shape[1]]))


def _tifffile_levels(path: Path):
    """Lazy zarr levels of the first series (largest first), ``(mpp, objective_power)`` and a closer."""
    import tifffile
    import zarr

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise ValueError("no image in the file")
        series = tif.series[0]
        n_levels = len(series.levels)
        axes = series.axes
        meta = _ome_meta(tif.ome_metadata) if tif.is_ome else _resolution_tags(series.pages[0])
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"the first image has axes {axes!r}, not a slide's Y and X")
    store = tifffile.imread(path, aszarr=True, level=None if n_levels > 1 else 0)
    opened = zarr.open(store, mode="r")
    levels = [opened[str(i)] for i in range(n_levels)] if n_levels > 1 else [opened]
    levels = sorted(levels, key=lambda level: -int(np.prod(level.shape)))
    return levels, meta, store.close


def _resolution_tags(page) -> tuple[tuple[float, float] | None, float | None]:
    """µm/px from the TIFF resolution tags (only with a centimetre or inch unit)."""
    tags = page.tags
    unit = {2: 25400.0, 3: 10000.0}.get(int(getattr(tags.get("ResolutionUnit"), "value", 1) or 1))
    if unit is None:
        return None, None
    values = []
    for name in ("YResolution", "XResolution"):
        value = getattr(tags.get(name), "value", None)
        pixels = value[0] / value[1] if isinstance(value, tuple) and value[1] else value
        if not pixels or not np.isfinite(pixels) or pixels <= 1:  # 1 px per unit: a placeholder, not a scan
            return None, None
        values.append(unit / float(pixels))
    return (values[0], values[1]), None


def _ome_meta(xml: str | None) -> tuple[tuple[float, float] | None, float | None]:
    """µm/px of the first OME image and the instrument's nominal magnification."""
    if not xml:
        return None, None
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None, None
    pixels = next((e for e in root.iter() if e.tag.endswith("}Pixels") or e.tag == "Pixels"), None)
    power = next((e.get("NominalMagnification") for e in root.iter() if e.tag.endswith("Objective")), None)
    power = float(power) if power else None
    if pixels is None:
        return None, power
    sizes = []
    for axis in ("Y", "X"):
        value, unit = pixels.get(f"PhysicalSize{axis}"), pixels.get(f"PhysicalSize{axis}Unit", "µm")
        factor = _MICRONS.get(unit)
        if value is None or factor is None or float(value) <= 0:
            return None, power
        sizes.append(float(value) * factor)
    return (sizes[0], sizes[1]), power


from .working import Resolution, level_for_mpp, working_image

__all__ += ["Resolution", "level_for_mpp", "working_image"]
