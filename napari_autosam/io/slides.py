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
* DICOM whole-slide images (a folder of ``.dcm`` files, or one of them):
  OpenSlide, levels and µm/px from the DICOM metadata (:mod:`.dicom`).

Every failure is a :class:`SlideReadError` naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

from .dicom import DICOM_SUFFIX, dicom_instance, is_dicom_folder
from .formats import OPENSLIDE_SUFFIXES, SLIDE_SUFFIXES, TIFFFILE_SUFFIXES, ZARR_SUFFIXES, accepted_inputs  # noqa: F401
from .images import ImageReadError

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


#: µm per unit of length, for OME and NGFF units.
_MICRONS = {"m": 1e6, "meter": 1e6, "mm": 1e3, "millimeter": 1e3, "µm": 1.0, "um": 1.0, "micrometer": 1.0,
            "micron": 1.0, "nm": 1e-3, "nanometer": 1e-3, "cm": 1e4, "centimeter": 1e4}


class SlideReadError(ImageReadError):
    """A slide could not be opened; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        super().__init__(path, reason)
        self.args = (f"cannot read slide {str(self.path)!r}: {reason}",)

    def __str__(self) -> str:
        return self.args[0]


@dataclass
class Slide:
    """An opened slide; its levels read pixels on demand.

    Attributes
    ----------
    path : the file or folder
    levels : list of lazy arrays, level 0 (full resolution) first; ``Y×X×3`` uint8 for
        brightfield RGB, else as stored (``Y×X``, ``C×Y×X``); each has ``shape``, ``dtype``,
        ``ndim`` and numpy-style slicing that reads only the window asked for
    downsamples : per level, level 0's size divided by that level's (1.0 first)
    mpp : ``(y, x)`` µm per pixel at level 0, or None when the file records none
    objective_power : the scanner's objective magnification (e.g. 40.0), or None
    vendor : the format, e.g. "aperio", "hamamatsu", "generic-tiff", "ome-tiff", "ome-zarr"
    backend : the library reading the pixels: "tifffile", "openslide" or "zarr"
    """

    path: Path
    levels: list
    downsamples: list[float]
    mpp: tuple[float, float] | None
    objective_power: float | None
    vendor: str
    backend: str
    _closers: list = field(default_factory=list, repr=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of level 0."""
        return tuple(int(s) for s in self.levels[0].shape)

    @property
    def is_rgb(self) -> bool:
        base = self.levels[0]
        return base.ndim == 3 and base.shape[-1] in (3, 4) and np.dtype(base.dtype) == np.uint8

    def level_mpp(self, level: int) -> tuple[float, float] | None:
        """``(y, x)`` µm per pixel of ``level``, or None for an uncalibrated slide."""
        if self.mpp is None:
            return None
        return self.mpp[0] * self.downsamples[level], self.mpp[1] * self.downsamples[level]

    def metadata(self) -> dict[str, Any]:
        """What a napari layer keeps about the slide (plain types only)."""
        return {
            "source": str(self.path),
            "vendor": self.vendor,
            "backend": self.backend,
            "mpp": list(self.mpp) if self.mpp else None,
            "units": "µm" if self.mpp else "uncalibrated: pixels",
            "objective_power": self.objective_power,
            "level_shapes": [list(level.shape) for level in self.levels],
            "downsamples": list(self.downsamples),
        }

    def close(self) -> None:
        for close in self._closers:
            close()
        self._closers.clear()


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
    if lowered.endswith(DICOM_SUFFIX):  # one instance of a series: the slide is its folder
        return Path(path).resolve().parent.name
    suffix = next((s for s in SLIDE_SUFFIXES + ZARR_SUFFIXES if lowered.endswith(s)), None)
    return name[: len(name) - len(suffix)] if suffix else Path(path).stem


def is_slide_path(path: str | os.PathLike) -> bool:
    """True for files with a slide ending and for folders that look like OME-Zarr."""
    path = Path(path)
    if path.is_dir():
        return _is_zarr_dir(path) or is_dicom_folder(path)
    return path.name.lower().endswith(SLIDE_SUFFIXES)


def _is_zarr_dir(path: Path) -> bool:
    return path.name.lower().endswith(ZARR_SUFFIXES) or any(
        (path / marker).is_file() for marker in (".zattrs", ".zgroup", "zarr.json"))


def open_slide(path: str | os.PathLike) -> Slide:
    """Open a slide without reading its pixels.

    Parameters
    ----------
    path : a slide file (see :data:`SLIDE_SUFFIXES`), an OME-Zarr image folder or a folder of DICOM ``.dcm`` files

    Raises
    ------
    SlideReadError
        Missing, unsupported, truncated or corrupt slides, and OME-Zarr
        folders without ``multiscales`` metadata.
    """
    path = Path(path)
    if not path.exists():
        raise SlideReadError(path, "no such file or folder")
    if path.is_dir() and is_dicom_folder(path) and not _is_zarr_dir(path):
        instance = dicom_instance(path)
        if instance is None:
            raise SlideReadError(path, "none of its .dcm files is a DICOM whole-slide image OpenSlide can read")
        from .openslide_levels import open_openslide

        return open_openslide(instance)
    if path.is_dir():
        if not _is_zarr_dir(path):
            raise SlideReadError(path, "a folder that is not OME-Zarr (no .zattrs, .zgroup or zarr.json) "
                                 "and holds no DICOM .dcm files")
        from .ngff import open_ngff

        return open_ngff(path)
    name = path.name.lower()
    if not name.endswith(SLIDE_SUFFIXES):
        raise SlideReadError(path, f"unsupported file type; expected {accepted_inputs()}")
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
