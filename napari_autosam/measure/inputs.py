"""Opening what is measured: labels (TIFF, OME-Zarr, PNG), the image beside them, probabilities, classes.

Nothing is read whole: TIFF and OME-Zarr come back as lazy arrays.  The
image is matched to the labels by size: the slide level whose size is the
labels' size is used, and its µm/px calibrates the table.  Errors are one
clear line (:class:`MeasureInputError`).  No napari or Qt here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .intensity import stain_for
from .table import Calibration
from .tiled import Sources

#: Label roles the package writes that are class masks (objects: their connected components).
MASK_ROLES = ("_autosam", "_h")
#: Class masks measured as connected components must fit in memory: at most this many pixels.
COMPONENTS_MAX_PIXELS = 8192 * 8192
OBJECTS = ("auto", "instances", "components")


class MeasureInputError(ValueError):
    """Inputs that cannot be measured together; the message is one line naming the file and the problem."""


@dataclass
class Opened:
    """Sources to measure and what is known about them."""

    sources: Sources
    calibration: Calibration
    label_classes: dict[int, str] = field(default_factory=dict)
    class_names: list[str] | None = None
    name: str = ""
    notes: list[str] = field(default_factory=list)


class _ChannelsLast:
    """A lazy ``C×Y×X`` array sliced as ``Y×X×C`` (only the window asked for is read)."""

    def __init__(self, array) -> None:
        self.array = array
        self.shape = (*array.shape[1:], array.shape[0])
        self.dtype = array.dtype

    def __getitem__(self, key):
        return np.moveaxis(np.asarray(self.array[(slice(None), *key)]), 0, -1)


def plane_shape(array) -> tuple[int, int]:
    """``(Y, X)`` of a ``Y×X``, ``Y×X×C`` (C ≤ 4) or ``C×Y×X`` array."""
    shape = tuple(int(s) for s in array.shape)
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] <= 4 and shape[0] > 4):
        return shape[:2]
    if len(shape) == 3:
        return shape[1:]
    raise MeasureInputError(f"expected a 2D image (Y×X, Y×X×C or C×Y×X), got shape {shape}")


def _channels_last(array):
    shape = tuple(array.shape)
    if len(shape) == 3 and plane_shape(array) == shape[1:]:
        return np.moveaxis(array, 0, -1) if isinstance(array, np.ndarray) else _ChannelsLast(array)
    return array


def open_labels(path: str | os.PathLike, *, max_pixels: int | None = None):
    """``(labels, mpp, downsample, level)``: a lazy ``Y×X`` integer array and the calibration the file records.

    With ``max_pixels``, an OME-Zarr pyramid gives its first level of at most
    that many pixels (``level`` > 0; ``mpp`` and ``downsample`` are that level's).
    """
    from ..io.images import open_lazy, read_mask
    from ..io.labels_zarr import LabelImage
    from ..io.slides import is_slide_path

    path = Path(path)
    if not path.exists():
        raise MeasureInputError(f"{path}: no such file or folder")
    mpp, downsample, level = None, 1.0, 0
    if path.is_dir():
        if not is_slide_path(path):
            raise MeasureInputError(f"{path}: a folder that is not an OME-Zarr label image")
        image = LabelImage.open(path)
        level = next((k for k, a in enumerate(image.levels) if max_pixels is None or a.shape[-1] * a.shape[-2]
                      <= max_pixels), len(image.levels) - 1)
        labels = image.levels[level]
        placement = image.placement
        resolution = image.attributes.get("resolution") or {}
        downsample = float(resolution.get("downsample", 1.0)) * 2**level
        if placement.unit == "micrometer":
            mpp = float(placement.scale[0]) * 2**level
    elif path.suffix.lower() in (".tif", ".tiff"):
        labels = open_lazy(path)
    else:
        labels = read_mask(path)
    if labels.ndim != 2:
        raise MeasureInputError(f"{path}: measuring needs 2D labels (Y×X), got shape {tuple(labels.shape)}")
    if np.dtype(labels.dtype).kind not in "iub":
        raise MeasureInputError(f"{path}: labels must be whole numbers, got {np.dtype(labels.dtype)}")
    return labels, mpp, downsample, level


def open_image(path: str | os.PathLike, shape: tuple[int, int]):
    """``(image, mpp, downsample)``: the level of ``path`` whose size is ``shape`` (lazy), its µm/px and downsample."""
    from ..io.images import read_image
    from ..io.slides import is_slide_path, open_slide

    path = Path(path)
    if not path.exists():
        raise MeasureInputError(f"{path}: no such file or folder")
    if is_slide_path(path):
        slide = open_slide(path)
        for k, level in enumerate(slide.levels):
            if plane_shape(level) == tuple(shape):
                mpp = slide.level_mpp(k)
                return _channels_last(level), (None if mpp is None else float(mpp[0])), float(slide.downsamples[k])
        sizes = ", ".join("×".join(str(s) for s in plane_shape(level)) for level in slide.levels)
    else:
        image = read_image(path)
        if plane_shape(image) == tuple(shape):
            return _channels_last(image), None, 1.0
        sizes = "×".join(str(s) for s in plane_shape(image))
    raise MeasureInputError(f"the labels are {shape[0]}×{shape[1]} but the image {path.name} is {sizes}; "
                            "measure the labels with the image they were segmented from")


def _open_aligned(path, shape, what: str):
    from ..io.images import open_lazy

    array = open_lazy(path)
    if tuple(array.shape[-2:]) != tuple(shape) or array.ndim != 2:
        raise MeasureInputError(f"the labels are {shape[0]}×{shape[1]} but the {what} {Path(path).name} is "
                                f"{'×'.join(str(s) for s in array.shape)}")
    return array


def _is_mask(path: Path, objects: str) -> bool:
    if objects not in OBJECTS:
        raise MeasureInputError(f"objects must be one of {', '.join(OBJECTS)}, got {objects!r}")
    if objects != "auto":
        return objects == "components"
    stem = path.name.split(".")[0]
    return stem.endswith(MASK_ROLES)


def components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Instance labels of a class mask (each 8-connected region of one value, numbered in raster order), and the mask.

    The mask itself (its values are the class ids) is returned as the regions' classes.
    """
    from skimage.measure import label

    mask = np.asarray(mask)
    regions = label(mask, background=0, connectivity=2)
    return regions.astype(np.int32, copy=False), mask


def open_inputs(labels_path, image_path=None, *, probability=None, h_probability=None, classes=None,
                class_names=None, mpp: float | None = None, downsample: float | None = None, stain: str = "auto",
                objects: str = "auto") -> Opened:
    """Open everything for :func:`napari_autosam.measure.measure`; checks sizes, raises MeasureInputError.

    ``image_path`` is a file or slide, or an array already at the labels' size
    (``Y×X`` or ``Y×X×C``, e.g. the working image ``segment`` read);
    ``mpp`` (µm per label pixel) and ``downsample`` (level-0 pixels per label
    pixel) override what the files record.
    """
    labels_path = Path(labels_path)
    is_mask = _is_mask(labels_path, objects)
    labels, label_mpp, label_downsample, level = open_labels(labels_path,
                                                            max_pixels=COMPONENTS_MAX_PIXELS if is_mask else None)
    shape = tuple(int(s) for s in labels.shape)
    notes = []
    if level:
        notes.append(f"{labels_path.name}: the class mask is measured at pyramid level {level} "
                     f"({2**level}× fewer pixels per side), small enough to split into connected regions")
    if is_mask and shape[0] * shape[1] > COMPONENTS_MAX_PIXELS:
        raise MeasureInputError(f"{labels_path.name} is a {shape[0]}×{shape[1]} class mask, too big to split "
                                "into connected components in memory; measure the instances output instead")
    image, image_mpp, image_downsample = _open_any_image(image_path, shape, notes if level else None)
    if downsample is None:
        downsample = image_downsample if label_downsample == 1.0 else label_downsample
    class_ids = None if classes is None or level else _open_aligned(classes, shape, "class mask")
    if is_mask:
        labels, mask_classes = components(np.asarray(labels))
        class_ids = mask_classes if class_ids is None else class_ids
    if mpp is not None and not (mpp > 0 and np.isfinite(mpp)):
        raise MeasureInputError(f"µm per pixel must be a positive number, got {mpp}")
    chosen = mpp if mpp is not None else label_mpp if label_mpp is not None else image_mpp
    mode = stain_for(tuple(image.shape), image.dtype, stain) if image is not None else "channels"
    sources = Sources(labels, image, mode,
                      None if probability is None else _open_aligned(probability, shape, "probability map"),
                      None if h_probability is None else _open_aligned(h_probability, shape, "h probability map"),
                      class_ids)
    return Opened(sources, Calibration(chosen, downsample), class_names=class_names, name=labels_path.name,
                  notes=notes)


def _open_any_image(image, shape, notes: list[str] | None):
    """``(image, mpp, downsample)`` of a path or an array at the labels' size (``(None, None, 1.0)`` without).

    With ``notes`` (labels read at a lower level), an image without a level of
    that size is left out with a note instead of an error.
    """
    if image is None:
        return None, None, 1.0
    try:
        if not hasattr(image, "shape"):
            return open_image(image, shape)
        if plane_shape(image) != tuple(shape):
            raise MeasureInputError(f"the labels are {shape[0]}×{shape[1]} but the image is "
                                    f"{'×'.join(str(s) for s in image.shape)}")
        return _channels_last(image), None, 1.0
    except MeasureInputError as exc:
        if notes is None:
            raise
        notes.append(f"no intensities: {exc}")
        return None, None, 1.0
