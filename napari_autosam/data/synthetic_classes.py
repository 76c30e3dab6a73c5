"""Synthetic multi-class images: objects that differ by shape and texture, never by brightness alone.

:func:`make_class_image` draws objects of up to three classes with the same
stain colour and the same mean intensity, so a model has to look at their
form to tell them apart:

* class 1, "round": filled disks with a fine speckle;
* class 2, "ring": hollow rings (the same outer size as the disks);
* class 3, "rod": long thin ellipses at random angles, with stripes along them.

:func:`make_shape_image` draws a harder, shape-only set: flat "round" disks
and flat "elongated" ellipses of the same area, stain and brightness, so
nothing but the outline tells the two classes apart.

The background is a low-contrast texture with noise.  Everything is seeded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

#: The names of the synthetic classes, in id order.
CLASS_NAMES = ("round", "ring", "rod")
#: The names of the shape-only classes of :func:`make_shape_image`.
SHAPE_CLASS_NAMES = ("round", "elongated")
#: Axis ratio of an elongated object (its area is that of a disk of the same size).
ELONGATION = 3.0


def _shape_mask(kind: int, dy: np.ndarray, dx: np.ndarray, size: float, angle: float) -> np.ndarray:
    r = np.hypot(dy, dx)
    if kind == 1:
        return r <= size
    if kind == 2:
        return (r <= size) & (r >= size * 0.55)
    if kind == 4:  # elongated, the area of a disk of radius ``size``
        c, s = np.cos(angle), np.sin(angle)
        u, v = c * dx + s * dy, -s * dx + c * dy
        half = np.sqrt(ELONGATION)
        return (u / (size * half)) ** 2 + (v / (size / half)) ** 2 <= 1
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    return (u / (size * 1.8)) ** 2 + (v / (size * 0.38)) ** 2 <= 1


def make_class_image(
    shape: tuple[int, int] = (192, 192),
    *,
    num_classes: int = 3,
    n_objects: int | None = None,
    size_range: tuple[float, float] = (9, 13),
    noise: float = 1.0,
    seed: int = 0,
    shape_only: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One RGB image with objects of ``num_classes`` (2 or 3) classes, their class ids and instances.

    Parameters
    ----------
    shape : (Y, X)
    num_classes : 2 (round, ring) or 3 (round, ring, rod)
    n_objects : objects to try to place (default: about 18 % of the area); overlapping ones are skipped
    size_range : object radius (rods: 1.8× long, 0.38× wide) in pixels
    noise : noise level relative to the default
    seed : random seed
    shape_only : flat disks (class 1) and flat elongated ellipses of the same area (class 2), no texture
        (``num_classes`` must be 2); see :func:`make_shape_image`

    Returns
    -------
    image : ``(Y, X, 3)`` uint8
    classes : ``(Y, X)`` uint8 class ids, 0 background
    instances : ``(Y, X)`` int32 object labels, 0 background
    """
    _check_class_args(num_classes, shape_only)
    rng = np.random.default_rng(seed)
    height, width = int(shape[0]), int(shape[1])
    mean_area = np.pi * np.mean(size_range) ** 2 * 0.8
    count = int(0.18 * height * width / mean_area) if n_objects is None else int(n_objects)
    classes = np.zeros((height, width), np.uint8)
    instances = np.zeros((height, width), np.int32)
    signal = np.zeros((height, width), np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    stripes = 0.5 + 0.5 * np.sin(xx * 1.3 + yy * 0.7)
    speckle = ndi.gaussian_filter(rng.standard_normal((height, width)).astype(np.float32), 1.0)
    placed = 0
    for _ in range(count * 4):
        if placed >= count:
            break
        kind = placed % num_classes + 1  # balanced classes
        size = rng.uniform(*size_range)
        cy, cx = rng.uniform(size, height - size), rng.uniform(size, width - size)
        y0, y1, x0, x1 = _reach(cy, cx, size, height, width)
        obj = _shape_mask(4 if shape_only and kind == 2 else kind, yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx, size, rng.uniform(0, np.pi))
        grown = ndi.binary_dilation(obj, iterations=2)
        if not obj.any() or (instances[y0:y1, x0:x1][grown] > 0).any():
            continue
        placed += 1
        classes[y0:y1, x0:x1][obj] = kind
        instances[y0:y1, x0:x1][obj] = placed
        texture = np.ones_like(obj, np.float32) if shape_only else {
            1: 0.8 + 0.4 * speckle[y0:y1, x0:x1], 2: np.ones_like(obj, np.float32),
            3: 0.6 + 0.8 * stripes[y0:y1, x0:x1]}[kind]
        signal[y0:y1, x0:x1][obj] = np.clip(texture[obj], 0, 2)
    return _stained(signal, rng, noise), classes, instances


def _check_class_args(num_classes: int, shape_only: bool) -> None:
    if num_classes not in (2, 3):
        raise ValueError(f"num_classes must be 2 or 3, got {num_classes!r}")
    if shape_only and num_classes != 2:
        raise ValueError("the shape-only set has 2 classes (round, elongated)")


def _reach(cy: float, cx: float, size: float, height: int, width: int) -> tuple[int, int, int, int]:
    """``y0, y1, x0, x1``: the window around a centre that holds any object of radius ``size`` (rods included)."""
    reach = int(np.ceil(size * 1.9)) + 1
    return (max(0, int(cy) - reach), min(height, int(cy) + reach + 1),
            max(0, int(cx) - reach), min(width, int(cx) + reach + 1))


def _stained(signal: np.ndarray, rng, noise: float) -> np.ndarray:
    """The objects' signal blurred, on a noisy background, as a purple stain: ``(Y, X, 3)`` uint8."""
    height, width = signal.shape
    signal = ndi.gaussian_filter(signal, 0.8)
    background = 0.08 * ndi.gaussian_filter(rng.standard_normal((height, width)).astype(np.float32), 3.0)
    value = np.clip(signal + background + 0.05 * noise * rng.standard_normal((height, width)), 0, 1.6) / 1.6
    stain = np.array([0.35, 0.55, 0.25], np.float32)  # the absorbance of a haematoxylin-like purple
    rgb = 255 * np.exp(-value[..., None] * stain * 2.2)
    return rgb.round().clip(0, 255).astype(np.uint8)


def make_shape_image(shape: tuple[int, int] = (256, 256), *, seed: int = 0,
                     **kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image of the shape-only set: flat round disks (class 1) and flat elongated ellipses (class 2).

    Both classes have the same stain, brightness, flat texture and area (an
    ellipse's axes are ``ELONGATION`` times apart); only the outline differs.
    Returns ``(image, classes, instances)`` like :func:`make_class_image`.
    """
    return make_class_image(shape, num_classes=2, seed=seed, shape_only=True, **kwargs)


def make_class_dataset(n: int, shape: tuple[int, int] = (192, 192), *, seed: int = 0,
                       **kwargs) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` images of :func:`make_class_image` (seeds ``seed .. seed+n-1``) and their class-id masks."""
    images, masks = [], []
    for i in range(n):
        image, classes, _ = make_class_image(shape, seed=seed + i, **kwargs)
        images.append(image)
        masks.append(classes)
    return images, masks


def class_names(num_classes: int = 3) -> Sequence[str]:
    """The names of the first ``num_classes`` synthetic classes."""
    return CLASS_NAMES[:num_classes]


def shape_class_names() -> Sequence[str]:
    """The names of the shape-only classes (``shape_only=True``)."""
    return SHAPE_CLASS_NAMES
