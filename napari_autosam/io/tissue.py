"""Where the tissue is on a slide: a coarse mask that lets whole-slide segmentation skip the glass.

The mask is computed from a low-resolution view of the slide (a pyramid level
or an area-averaged thumbnail about :data:`THUMBNAIL_SIDE` pixels on its long
side), never from the full resolution.

**Which images are detected, and how the kind is decided.**  Only
*brightfield* images are thresholded: RGB ``uint8`` whose median brightness
(the mean of R, G and B) is at least :data:`BRIGHT_BACKGROUND` — glass in
transmitted light is near white, so at least half of a brightfield thumbnail
is bright (and a slide that is all tissue is pink or purple, still bright).
Everything else — fluorescence (a dark background: the space between cells
is dark *inside* the tissue too), greyscale, multichannel or 16-bit images —
is kept whole: the mask is all tissue and nothing is skipped.  A wrong call
therefore costs time, never labels.

**Brightfield detection.**  Two stains-agnostic signals per thumbnail pixel,
both near 0 on glass: colour saturation (HSV S) and optical density (the mean
over R, G, B of ``-log10((I + 1) / 256)``).  Each is smoothed and
thresholded with Otsu's method, the threshold clamped to a range that lies
between glass and stained tissue (so a slide with no tissue gives an empty
mask and a slide that is all tissue is not cut in two); a pixel is tissue
when either signal passes.  Then holes up to :data:`HOLE_UM2` are filled,
specks under :data:`SPECK_UM2` removed, and the mask grown by
:data:`MARGIN_UM` so that tissue edges reach the tiles that hold them.

A mask can also be given: a mask image of any size (stretched over the
slide; non-zero is tissue) or a GeoJSON of regions in level-0 pixels (e.g.
QuPath's annotations).  No napari or Qt here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["TissueMask", "detect_tissue", "image_kind", "read_tissue_file", "slide_thumbnail", "slide_tissue",
           "whole_tissue"]

#: The thumbnail the mask is computed on: about this many µm per pixel, at most THUMBNAIL_SIDE pixels long.
THUMBNAIL_UM = 8.0
THUMBNAIL_SIDE = 2048
#: Median brightness (0-255) at or above which an RGB image counts as brightfield.
BRIGHT_BACKGROUND = 150.0
#: Otsu thresholds are clamped into these ranges (saturation 0-1, optical density).
SATURATION_RANGE = (0.05, 0.12)
DENSITY_RANGE = (0.06, 0.15)
#: Holes smaller than this (µm²) are filled, specks smaller than this removed; the mask grows by MARGIN_UM.
HOLE_UM2 = 200_000.0
SPECK_UM2 = 20_000.0
MARGIN_UM = 32.0
#: Without a µm/px, the same rules in thumbnail pixels (as if the thumbnail were at 16 µm/px).
_FALLBACK_MPP = 16.0


@dataclass
class TissueMask:
    """A coarse tissue mask over a slide.

    Attributes
    ----------
    mask : ``h×w`` bool, True on tissue
    downsample : ``(y, x)`` level-0 pixels per mask pixel
    kind : "brightfield" (detected), "fluorescence" (a dark or non-RGB image: all kept),
        "given" (from a file) or "off" (all kept on request)
    """

    mask: np.ndarray
    downsample: tuple[float, float]
    kind: str

    @property
    def fraction(self) -> float:
        """Share of the slide that is tissue (0-1)."""
        return float(np.mean(self.mask)) if self.mask.size else 0.0

    @property
    def everything(self) -> bool:
        """True when the mask keeps the whole slide (nothing to skip)."""
        return bool(self.mask.all())

    def box_fraction(self, box: tuple[float, float, float, float]) -> float:
        """Share of tissue in ``box = (y0, y1, x0, x1)`` of level-0 pixels (mask pixels touched by the box)."""
        dy, dx = self.downsample
        h, w = self.mask.shape
        y0, y1, x0, x1 = box
        r0, r1 = max(0, int(y0 // dy)), min(h, max(int(math.ceil(y1 / dy)), int(y0 // dy) + 1))
        c0, c1 = max(0, int(x0 // dx)), min(w, max(int(math.ceil(x1 / dx)), int(x0 // dx) + 1))
        if r1 <= r0 or c1 <= c0:
            return 0.0
        return float(np.mean(self.mask[r0:r1, c0:c1]))

    def area_mm2(self, mpp: tuple[float, float] | None) -> float | None:
        """Tissue area in mm², or None without a µm/px."""
        if mpp is None:
            return None
        pixel = self.downsample[0] * mpp[0] * self.downsample[1] * mpp[1]
        return float(np.count_nonzero(self.mask)) * pixel / 1e6


def whole_tissue(level0_shape: tuple[int, int], kind: str = "off") -> TissueMask:
    """A mask that keeps everything (one pixel standing for the whole slide)."""
    return TissueMask(np.ones((1, 1), bool), (float(level0_shape[0]), float(level0_shape[1])), kind)


def image_kind(thumbnail: np.ndarray) -> str:
    """"brightfield" for a bright RGB ``uint8`` thumbnail, else "fluorescence" (see the module docstring)."""
    thumbnail = np.asarray(thumbnail)
    if thumbnail.ndim != 3 or thumbnail.shape[-1] not in (3, 4) or thumbnail.dtype != np.uint8:
        return "fluorescence"
    brightness = thumbnail[..., :3].mean(axis=-1)
    return "brightfield" if float(np.median(brightness)) >= BRIGHT_BACKGROUND else "fluorescence"


def _clamped_otsu(values: np.ndarray, low: float, high: float) -> float:
    from skimage.filters import threshold_otsu

    if float(values.max()) - float(values.min()) < 1e-6:
        return high
    return float(np.clip(threshold_otsu(values), low, high))


def detect_tissue(thumbnail: np.ndarray, downsample: tuple[float, float] = (1.0, 1.0),
                  mpp: tuple[float, float] | None = None) -> TissueMask:
    """The tissue mask of a thumbnail (``h×w×3`` uint8 for brightfield; any image otherwise).

    Parameters
    ----------
    thumbnail : the slide at low resolution
    downsample : ``(y, x)`` level-0 pixels per thumbnail pixel
    mpp : level-0 µm/px, or None (sizes then assume a 16 µm/px thumbnail)
    """
    from scipy.ndimage import distance_transform_edt
    from skimage.color import rgb2hsv
    from skimage.filters import gaussian
    from skimage.morphology import remove_small_objects

    thumbnail = np.asarray(thumbnail)
    kind = image_kind(thumbnail)
    if kind != "brightfield":
        return TissueMask(np.ones(thumbnail.shape[:2], bool), tuple(downsample), kind)
    rgb = thumbnail[..., :3]
    saturation = gaussian(rgb2hsv(rgb)[..., 1], sigma=1.0)
    density = gaussian(-np.log10((rgb.astype(np.float32) + 1.0) / 256.0).mean(axis=-1), sigma=1.0)
    tissue = (saturation > _clamped_otsu(saturation, *SATURATION_RANGE)) | (
        density > _clamped_otsu(density, *DENSITY_RANGE))
    pixel_um = (_FALLBACK_MPP if mpp is None else math.sqrt(mpp[0] * downsample[0] * mpp[1] * downsample[1]))
    tissue = _fill_holes(tissue, int(HOLE_UM2 / pixel_um**2))
    tissue = remove_small_objects(tissue, max_size=int(SPECK_UM2 / pixel_um**2))
    margin = int(math.ceil(MARGIN_UM / pixel_um))
    if margin and tissue.any():
        tissue = distance_transform_edt(~tissue) <= margin
    return TissueMask(tissue, (float(downsample[0]), float(downsample[1])), kind)


def _fill_holes(tissue: np.ndarray, max_size: int) -> np.ndarray:
    """Fill the enclosed background regions of up to ``max_size`` pixels (glass reaching the edge is never a hole)."""
    from skimage.measure import label

    background = label(~tissue, connectivity=1)
    edge = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    sizes = np.bincount(background.ravel())
    small = (sizes <= max_size) & ~np.isin(np.arange(len(sizes)), edge)
    small[0] = False
    return tissue | small[background]


def slide_thumbnail(slide, side: int = THUMBNAIL_SIDE) -> tuple[np.ndarray, tuple[float, float]]:
    """The slide at most ``side`` pixels long (and no finer than :data:`THUMBNAIL_UM` µm/px where known),
    and ``(y, x)`` level-0 pixels per thumbnail pixel.

    Reads the coarsest pyramid level at least that big; a bigger one is
    area-averaged down block by block, never read whole.
    """
    from .working import Resampled

    height, width = slide.shape[:2]
    wanted = max(1.0, max(height, width) / side)
    if slide.mpp is not None:  # no finer than THUMBNAIL_UM: tissue outlines need no more
        wanted = max(wanted, THUMBNAIL_UM / max(min(slide.mpp), 1e-6))
    level = max((k for k, d in enumerate(slide.downsamples) if d <= wanted * 1.001), default=0,
                key=lambda k: slide.downsamples[k])
    source = slide.levels[level]
    factor = wanted / slide.downsamples[level]
    if source.ndim == 3 and source.shape[0] < source.shape[-1] and source.shape[0] <= 16:  # C×Y×X: channels last
        source = _ChannelsLast(source)
    if factor > 1.05:
        source = Resampled(source, factor)
    out_h, out_w = source.shape[:2]
    step = max(16, int(4096 // max(1.0, factor)))
    rows = []
    for y in range(0, out_h, step):
        rows.append(np.concatenate([np.asarray(source[y : y + step, x : x + step])
                                    for x in range(0, out_w, step)], axis=1))
    thumbnail = np.concatenate(rows, axis=0)
    return thumbnail, (height / out_h, width / out_w)


class _ChannelsLast:
    """A lazy ``C×Y×X`` level seen as ``Y×X×C``."""

    def __init__(self, source) -> None:
        self.source = source
        c, h, w = source.shape
        self.shape, self.ndim, self.dtype = (h, w, c), 3, source.dtype

    def __getitem__(self, index):
        ys, xs = (index + (slice(None), slice(None)))[:2]
        return np.moveaxis(np.asarray(self.source[:, ys, xs]), 0, -1)


def slide_tissue(slide) -> TissueMask:
    """Detect the tissue of an opened :class:`~napari_autosam.io.slides.Slide` (see the module docstring)."""
    thumbnail, downsample = slide_thumbnail(slide)
    return detect_tissue(thumbnail, downsample, slide.mpp)


class TissueFileError(ValueError):
    """A tissue file could not be used; the message names it."""


def read_tissue_file(path: str | os.PathLike, level0_shape: tuple[int, int],
                     side: int = THUMBNAIL_SIDE) -> TissueMask:
    """A given tissue mask: a GeoJSON of regions in level-0 pixels, or a mask image stretched over the slide.

    Raises
    ------
    TissueFileError
        Unreadable file, a GeoJSON without polygons, or an empty mask.
    """
    from .geojson import GeoJSONError, is_geojson, read_features
    from .images import ImageReadError, read_mask

    path = Path(path)
    height, width = level0_shape
    if is_geojson(path):
        try:
            objects, _ = read_features(path)
        except (GeoJSONError, OSError) as error:
            raise TissueFileError(f"{path.name}: {error}") from error
        if not objects:
            raise TissueFileError(f"{path.name}: no polygon regions to use as tissue")
        from shapely.affinity import scale

        from .polygons import fill_geometry

        d = max(1.0, max(height, width) / side)
        shape = (max(1, math.ceil(height / d)), max(1, math.ceil(width / d)))
        mask = np.zeros(shape, np.uint8)
        for obj in objects:
            fill_geometry(mask, scale(obj.geometry, 1 / d, 1 / d, origin=(0, 0)), 1)
        tissue = TissueMask(mask.astype(bool), (height / shape[0], width / shape[1]), "given")
    else:
        try:
            mask = np.asarray(read_mask(path)) > 0
        except (ImageReadError, OSError, ValueError) as error:
            raise TissueFileError(f"{path.name}: not a readable mask image or GeoJSON ({error})") from error
        if mask.ndim != 2:
            raise TissueFileError(f"{path.name}: a tissue mask must be one plane, got shape {mask.shape}")
        tissue = TissueMask(mask, (height / mask.shape[0], width / mask.shape[1]), "given")
    if not tissue.mask.any():
        raise TissueFileError(f"{path.name}: the tissue mask is empty")
    return tissue
