"""Synthetic multi-class images: objects that differ by shape and texture, never by brightness alone.

:func:`make_class_image` draws objects of up to three classes with the same
stain colour and the same mean intensity, so a model has to look at their
form to tell them apart:

* class 1, "round": filled disks with a fine speckle;
* class 2, "ring": hollow rings (the same outer size as the disks);
* class 3, "rod": long thin ellipses at random angles, with stripes along them.

The background is a low-contrast texture with noise.  Everything is seeded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

#: The names of the synthetic classes, in id order.
CLASS_NAMES = ("round", "ring", "rod")


def _shape_mask(kind: int, dy: np.ndarray, dx: np.ndarray, size: float, angle: float) -> np.ndarray:
    r = np.hypot(dy, dx)
    if kind == 1:
        return r <= size
    if kind == 2:
        return (r <= size) & (r >= size * 0.55)
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

    Returns
    -------
    image : ``(Y, X, 3)`` uint8
    classes : ``(Y, X)`` uint8 class ids, 0 background
    instances : ``(Y, X)`` int32 object labels, 0 background
    """
    if num_classes not in (2, 3):
        raise ValueError(f"num_classes must be 2 or 3, got {num_classes!r}")
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
        reach = int(np.ceil(size * 1.9)) + 1
        y0, y1 = max(0, int(cy) - reach), min(height, int(cy) + reach + 1)
        x0, x1 = max(0, int(cx) - reach), min(width, int(cx) + reach + 1)
        obj = _shape_mask(kind, yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx, size, rng.uniform(0, np.pi))
        grown = ndi.binary_dilation(obj, iterations=2)
        if not obj.any() or (instances[y0:y1, x0:x1][grown] > 0).any():
            continue
        placed += 1
        classes[y0:y1, x0:x1][obj] = kind
        instances[y0:y1, x0:x1][obj] = placed
        texture = {1: 0.8 + 0.4 * speckle[y0:y1, x0:x1], 2: np.ones_like(obj, np.float32),
                   3: 0.6 + 0.8 * stripes[y0:y1, x0:x1]}[kind]
        signal[y0:y1, x0:x1][obj] = np.clip(texture[obj], 0, 2)
    return _stained(signal, rng, noise), classes, instances


def _stained(signal: np.ndarray, rng, noise: float) -> np.ndarray:
    """The objects' signal blurred, on a noisy background, as a purple stain: ``(Y, X, 3)`` uint8."""
    height, width = signal.shape
    signal = ndi.gaussian_filter(signal, 0.8)
    background = 0.08 * ndi.gaussian_filter(rng.standard_normal((height, width)).astype(np.float32), 3.0)
    value = np.clip(signal + background + 0.05 * noise * rng.standard_normal((height, width)), 0, 1.6) / 1.6
    stain = np.array([0.35, 0.55, 0.25], np.float32)  # the absorbance of a haematoxylin-like purple
    rgb = 255 * np.exp(-value[..., None] * stain * 2.2)
    return rgb.round().clip(0, 255).astype(np.uint8)


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
