"""Correcting part of a slide: where the on-disk labels of an image live, the box to edit, and accepting it.

The labels of a big image are OME-Zarr label images on disk
(:mod:`napari_autosam.io.labels_zarr`) that a viewer shows lazily and
cannot paint.  A region of them (at most ``MAX_EDIT_SIDE`` pixels a side at
the working resolution) is copied into memory, edited, and accepted:
:func:`accept_region` writes it back into the on-disk labels (that region and
its pyramid footprint only) and stores it as a correction in the
:class:`~napari_autosam.annotations.AnnotationStore`, with the slide, the
working resolution and the region's position at level 0 and at the working
resolution (through the one mapping of :mod:`napari_autosam.io.working`).  No napari or Qt here.
"""

from __future__ import annotations

import os

import numpy as np

#: A region to edit may be at most this many pixels on a side (at the working resolution).
MAX_EDIT_SIDE = 4096


def edit_box(box: tuple[int, int, int, int], shape: tuple[int, int], *,
             max_side: int | None = None) -> tuple[int, int, int, int]:
    """Check a region ``(y0, y1, x0, x1)`` (working-resolution pixels) for editing and clip it to ``shape``.

    ``max_side`` defaults to :data:`MAX_EDIT_SIDE`.

    Raises
    ------
    ValueError
        The region is outside the image, or larger than ``max_side`` on a side (one line saying what to do).
    """
    max_side = MAX_EDIT_SIDE if max_side is None else max_side
    height, width = (int(s) for s in shape)
    y0, y1, x0, x1 = (int(v) for v in box)
    y0, y1, x0, x1 = max(0, y0), min(height, y1), max(0, x0), min(width, x1)
    if y1 <= y0 or x1 <= x0:
        raise ValueError(f"the region {tuple(int(v) for v in box)} is outside the {height}×{width} image; pan to the image first")
    if max(y1 - y0, x1 - x0) > max_side:
        raise ValueError(f"the region is {y1 - y0}×{x1 - x0} pixels; zoom in until it is at most {max_side}² "
                         "(at the working resolution) to edit it")
    return y0, y1, x0, x1


def resolution_facts(resolution) -> dict:
    """``{"level", "downsample", "mpp"}`` of a Resolution (``mpp`` None for an uncalibrated slide)."""
    return {"mpp": None, **resolution.to_dict()}


def accept_region(annotations, labels_path: str | os.PathLike, box: tuple[int, int, int, int], image: np.ndarray,
                  mask: np.ndarray, *, source: str, resolution=None, layer_name: str | None = None,
                  **extra):
    """Write an edited region back into the on-disk labels and store it as a correction.

    Parameters
    ----------
    annotations : AnnotationStore
    labels_path : the OME-Zarr label image (level 0 at the working resolution)
    box : ``(y0, y1, x0, x1)`` of the region, working-resolution pixels
    image : ``h×w×3`` (or ``h×w``) pixels of the region at the working resolution
    mask : ``h×w`` edited labels (0 background)
    source : the slide's path
    resolution : the working resolution (:class:`~napari_autosam.io.working.Resolution`; None: level 0)
    **extra : more facts for the annotation entry (model, SAM)

    Returns the new :class:`~napari_autosam.annotations.AnnotationEntry`; its
    ``extra`` holds ``slide``, ``resolution``, ``level0_box`` and ``working_box``.
    """
    from .io.labels_zarr import LabelImage
    from .io.working import Resolution, region_to_level0

    resolution = resolution if resolution is not None else Resolution(0, 1.0)
    mask = np.asarray(mask)
    y0, y1, x0, x1 = box
    if mask.shape != (y1 - y0, x1 - x0) or tuple(np.asarray(image).shape[:2]) != mask.shape:
        raise ValueError(f"the edited labels {mask.shape} and image {np.asarray(image).shape} do not fit the region "
                         f"{y1 - y0}×{x1 - x0}")
    labels = LabelImage.open(labels_path, mode="r+")
    labels.update_region(box, mask.astype(labels.dtype, copy=False))
    facts = resolution_facts(resolution)
    return annotations.accept(image, mask, source=source, layer_name=layer_name, region=box, slide=str(source),
                              resolution=facts, level0_box=list(region_to_level0(box, resolution)),
                              working_box=[int(v) for v in box], labels=str(labels_path), **extra)


def stored_labels(folder: str | os.PathLike, stem: str) -> dict:
    """The finished label images an earlier run left in ``folder`` for ``stem``: role → (path, attributes).

    Roles are ``"autosam"``, ``"h"`` and ``"instances"``; a folder that is not a
    readable OME-Zarr label image is skipped (whole-image writes are atomic, so
    a crashed run leaves none half-written).
    """
    from .io.labels_zarr import LabelImage, labels_path

    found = {}
    for role in ("autosam", "h", "instances"):
        path = labels_path(folder, stem, role)
        if not path.is_dir():
            continue
        try:
            found[role] = (path, LabelImage.open(path).attributes)
        except ValueError:
            continue
    return found
