"""Training data: (image, mask) pairs turned into SAM-ready samples, checked before training.

A :class:`Sample` is one 2D plane: an ``H×W×3`` uint8 RGB image (SAM's input,
scaled by :func:`napari_autosam.io.normalize.to_rgb_uint8`) and an ``H×W``
bool mask (label images count as foreground where > 0).  3D stacks become
one sample per slice, scaled together so every slice looks alike.

Every problem that would make training fail or silently learn nothing is
raised here, before any compute, as a :class:`TrainingDataError` naming the
file (or array) at fault: unreadable files, NaN/inf pixels, shapes that do
not match, masks that are empty in every image.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..io.normalize import Normalization, compute_normalization, to_rgb_uint8
from ..sam.cache import image_key


class TrainingDataError(ValueError):
    """Training data that cannot be used; the message names the file or array at fault."""


@dataclass(eq=False)
class Sample:
    """One training plane.

    Attributes
    ----------
    name : str
        Shown in reports: the file stem, ``"<stem>:z007"`` for stack slices.
    image : ndarray
        ``H×W×3`` uint8 RGB, SAM's input.
    mask : ndarray
        ``H×W`` bool foreground.
    source : str
        The file (or ``"array <i>"``) the plane came from; slices of one stack
        share it, so a validation split never puts neighbouring slices on
        both sides.
    normalization : Normalization or None
        How the raw intensities were scaled to 0..255.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray
    source: str = ""
    normalization: Normalization | None = None
    _key: str | None = field(default=None, repr=False)

    @property
    def key(self) -> str:
        """Content hash of :attr:`image` (the embedding cache's key)."""
        if self._key is None:
            self._key = image_key(self.image)
        return self._key


def _check_finite(image: np.ndarray, label: str) -> None:
    if image.dtype.kind in "fc" and not np.all(np.isfinite(image)):
        bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        raise TrainingDataError(f"{label}: the image has {bad} NaN or infinite pixels; fix or drop it before training")


def _foreground(mask, label: str) -> np.ndarray:
    """Any mask (bool, 0/1, 0/255, instance labels) → bool foreground; rejects NaNs and colour masks."""
    mask = np.asarray(mask)
    if mask.dtype.kind in "fc":
        if not np.all(np.isfinite(mask)):
            raise TrainingDataError(f"{label}: the mask has NaN or infinite values")
    elif mask.dtype.kind not in "biu":
        raise TrainingDataError(f"{label}: the mask has dtype {mask.dtype}; expected labels or a binary mask")
    return mask > 0


def _stack_axis(image: np.ndarray, mask: np.ndarray, channel_axis: int | None) -> bool:
    """True when ``image`` is a ``(Z, Y, X[, C])`` stack that goes with a ``(Z, Y, X)`` mask."""
    if mask.ndim != 3:
        return False
    if image.ndim == 4:
        return True
    # (Y, X, 3) with a (Y, X, 3) "mask" is a colour mask, not a stack of 3-pixel-wide slices
    return image.ndim == 3 and image.shape == mask.shape and channel_axis is None and image.shape[-1] > 4


def _mask_values(mask, label: str, classes) -> np.ndarray:
    """Foreground (binary model) or checked class ids (``classes``: a ClassSet, :mod:`napari_autosam.class_sets`)."""
    fg = _foreground(mask, label)
    if classes is None:
        return fg
    from ..class_sets import ClassesError, class_ids

    try:
        return class_ids(mask, classes, label)
    except ClassesError as exc:
        raise TrainingDataError(str(exc)) from None


def _plane_samples(image, mask, name, label, channel_axis, channels, percentiles, classes=None) -> list[Sample]:
    try:
        rgb, norm = to_rgb_uint8(image, channel_axis=channel_axis, channels=channels, percentiles=percentiles)
    except ValueError as exc:
        raise TrainingDataError(f"{label}: {exc}") from exc
    fg = _mask_values(mask, label, classes)
    if fg.ndim == 3 and fg.shape[-1] in (3, 4) and fg.shape[:2] == rgb.shape[:2]:
        raise TrainingDataError(f"{label}: the mask is a colour image of shape {tuple(fg.shape)}; a mask must be "
                                "H×W labels or a binary mask")
    if fg.ndim != 2 or fg.shape != rgb.shape[:2]:
        raise TrainingDataError(
            f"{label}: the image is {rgb.shape[0]}×{rgb.shape[1]} (shape {tuple(image.shape)}) "
            f"but its mask has shape {tuple(fg.shape)}"
        )
    return [Sample(name, rgb, fg, label, norm)]


def _stack_samples(image, mask, name, label, channel_axis, channels, percentiles, classes=None) -> list[Sample]:
    fg = _mask_values(mask, label, classes)
    if image.shape[:3] != fg.shape:
        raise TrainingDataError(f"{label}: the stack has shape {tuple(image.shape)} but its mask has shape {fg.shape}")
    plane_axis = None
    if image.ndim == 4:
        plane_axis = -1 if channel_axis is None else channel_axis
    try:
        if plane_axis is None:  # one scaling for all slices; a flat view is never mistaken for channels
            norm = compute_normalization(image.reshape(-1, image.shape[-1]), channels=channels, percentiles=percentiles)
        else:
            norm = compute_normalization(image, channel_axis=plane_axis % 3 + 1, channels=channels,
                                         percentiles=percentiles)
        planes = [to_rgb_uint8(image[z], channel_axis=plane_axis, normalization=norm)[0] for z in range(len(image))]
    except ValueError as exc:
        raise TrainingDataError(f"{label}: {exc}") from exc
    digits = max(3, len(str(len(planes) - 1)))
    return [Sample(f"{name}:z{z:0{digits}d}", rgb, fg[z], label, norm) for z, rgb in enumerate(planes)]


def samples_from_pair(
    image,
    mask,
    name: str,
    *,
    source: str | None = None,
    channel_axis: int | None = None,
    channels: Sequence[int] | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
    classes=None,
) -> list[Sample]:
    """The samples of one image and its mask (one for a plane, one per slice for a stack).

    With ``classes`` (a :class:`~napari_autosam.class_sets.ClassSet`) the mask
    keeps its class ids (checked to be ``0..K``) instead of becoming a
    foreground mask.

    Layouts: ``(Y, X)`` of any dtype, ``(Y, X, 3|4)`` RGB(A), multichannel
    ``(Y, X, C)`` / ``(C, Y, X)`` with a ``(Y, X)`` mask; ``(Z, Y, X)`` or
    ``(Z, Y, X, C)`` stacks with a ``(Z, Y, X)`` mask.  ``channel_axis``
    names the channel axis of one plane.
    """
    label = source or name
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.size == 0 or image.ndim not in (2, 3, 4):
        raise TrainingDataError(f"{label}: expected a 2D image, a multichannel image or a stack, got shape {image.shape}")
    _check_finite(image, label)
    split = _stack_samples if _stack_axis(image, mask, channel_axis) else _plane_samples
    return split(image, mask, name, label, channel_axis, channels, percentiles, classes)


def check_samples(samples: Sequence[Sample]) -> list[Sample]:
    """Raise if there is nothing to learn from: no samples, or every mask empty."""
    samples = list(samples)
    if not samples:
        raise TrainingDataError("no training images were given")
    if not any(s.mask.any() for s in samples):
        sources = sorted({s.source or s.name for s in samples})
        shown = ", ".join(sources[:5]) + (f" (+{len(sources) - 5} more)" if len(sources) > 5 else "")
        raise TrainingDataError(f"every mask is empty, so there is nothing to learn: {shown}")
    return samples


def samples_from_arrays(
    images: Sequence,
    masks: Sequence,
    names: Sequence[str] | None = None,
    *,
    channel_axis: int | None = None,
    channels: Sequence[int] | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
    classes=None,
) -> list[Sample]:
    """Samples from in-memory images and masks (any layout :func:`samples_from_pair` takes).

    Raises :class:`TrainingDataError` (a ``ValueError``) naming the array.
    """
    images, masks = list(images), list(masks)
    if len(images) != len(masks):
        raise TrainingDataError(f"{len(images)} images but {len(masks)} masks")
    names = list(names) if names is not None else [f"image_{i:03d}" for i in range(len(images))]
    if len(names) != len(images):
        raise TrainingDataError(f"{len(images)} images but {len(names)} names")
    samples: list[Sample] = []
    for i, (image, mask, name) in enumerate(zip(images, masks, names)):
        samples += samples_from_pair(image, mask, str(name), source=f"{name} (array {i})",
                                     channel_axis=channel_axis, channels=channels, percentiles=percentiles,
                                     classes=classes)
    return check_samples(samples)


def load_samples(
    images_dir: str | os.PathLike,
    masks_dir: str | os.PathLike,
    *,
    channel_axis: int | None = None,
    channels: Sequence[int] | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
    classes=None,
) -> list[Sample]:
    """Read every image in ``images_dir`` with its mask (matched by file stem) from ``masks_dir``.

    Returns a list of :class:`Sample`; raises :class:`TrainingDataError`
    naming the file for unreadable files and bad contents, ``ValueError``
    for images without masks, ``FileNotFoundError`` for missing folders.
    """
    from ..io.geojson import is_geojson
    from ..io.images import ImageReadError, image_stem, pair_images_and_masks, read_image, read_mask

    samples: list[Sample] = []
    for image_path, mask_path in pair_images_and_masks(images_dir, masks_dir):
        try:
            image = read_image(image_path)
            mask = read_mask(mask_path) if not is_geojson(mask_path) else _geojson_mask(mask_path, image, classes)
        except ImageReadError as exc:
            raise TrainingDataError(str(exc)) from exc
        source = f"{image_path} (mask {mask_path})"
        samples += samples_from_pair(image, mask, image_stem(image_path), source=source,
                                     channel_axis=channel_axis, channels=channels, percentiles=percentiles,
                                     classes=classes)
    return check_samples(samples)


def _geojson_mask(path, image: np.ndarray, classes=None) -> np.ndarray:
    """The objects of a QuPath GeoJSON file rasterised at the size of ``image`` (one plane).

    With ``classes``: the class-id image, ids by the classes' names.
    """
    from ..inference.inputs import image_layout
    from ..io.geojson_labels import read_geojson_labels

    layout = image_layout(image)
    if layout.is_stack:
        raise TrainingDataError(f"{path}: GeoJSON masks go with 2D images; its image is a stack {layout.shape}")
    result = read_geojson_labels(path, layout.plane_shape, class_names=classes.names if classes else None)
    for message in result.messages:
        logging.getLogger("napari_autosam").warning("note: %s", message)
    if classes is not None:
        return result.classes if result.classes is not None else np.zeros(layout.plane_shape, np.uint8)
    return result.instances


def split_samples(
    samples: Sequence[Sample], val_fraction: float = 0.2, *, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Split into ``(train, validation)`` with a fixed seed.

    The split is by source (all slices of a stack on one side) when there
    are at least two sources, else by sample.  At least one sample goes to
    each side; ``val_fraction`` is the share of sources (or samples) held out.
    """
    samples = list(samples)
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.source or s.name, []).append(s)
    units = list(groups.values()) if len(groups) >= 2 else [[s] for s in samples]
    if len(units) < 2:
        raise ValueError("a validation split needs at least two images; pass validation images explicitly")
    order = np.random.default_rng(seed).permutation(len(units))
    n_val = min(len(units) - 1, max(1, int(round(val_fraction * len(units)))))
    val_ids = set(order[:n_val].tolist())
    train = [s for i, unit in enumerate(units) if i not in val_ids for s in unit]
    val = [s for i, unit in enumerate(units) if i in val_ids for s in unit]
    return train, val
