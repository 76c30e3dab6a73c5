"""Segmentation of big images straight into OME-Zarr label images on disk.

The segmenter's tiled outputs already live in zarr arrays in a scratch
store; here they are copied chunk by chunk into ``<stem>_autosam.ome.zarr``,
``<stem>_h.ome.zarr`` and ``<stem>_instances.ome.zarr``
(:mod:`napari_autosam.io.labels_zarr`), so no full-resolution array is ever
held in memory.  Segmenting the whole image writes new label images (built
under temporary names, renamed when all are complete); segmenting a region
updates that region of the existing ones (created empty if missing).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_directory, remove_scratch, scratch_folder
from ..io.labels_zarr import LabelImage, Placement, labels_path
from ..io.normalize import Normalization
from ..progress import Task
from .inputs import ImageLayout, image_layout

#: role → (SegmentationResult attribute, dtype, NGFF colours)
ROLES = {
    "autosam": ("autosam_mask", np.uint8, {1: (0, 229, 255, 255)}),
    "h": ("h_mask", np.uint8, {1: (255, 140, 26, 255)}),
    "instances": ("instances", np.int32, None),
}


@dataclass
class OnDiskResult:
    """What :func:`segment_to_labels` wrote.

    Attributes
    ----------
    paths : role ("autosam", "h", "instances") → the OME-Zarr folder
    region : ``(y0, y1, x0, x1)`` that was segmented, or None for the whole image
    agreement, normalization, cancelled, untrained, messages : as in SegmentationResult
    foreground : fraction of AutoSAM foreground in what was segmented
    """

    paths: dict[str, Path]
    region: tuple[int, int, int, int] | None
    agreement: list[float]
    normalization: Normalization
    foreground: float = 0.0
    cancelled: bool = False
    untrained: bool = False
    messages: list[str] = field(default_factory=list)


class WindowView:
    """A lazy window ``(y0, y1, x0, x1)`` of an image's planes: slicing reads only from the window."""

    def __init__(self, image, layout: ImageLayout, window: tuple[int, int, int, int]) -> None:
        self.image, self.layout = image, layout
        self.window = tuple(int(v) for v in window)
        y0, y1, x0, x1 = self.window
        shape = list(layout.shape)
        y, x = layout.spatial_axes
        shape[y], shape[x] = y1 - y0, x1 - x0
        self.shape, self.dtype, self.ndim = tuple(shape), image.dtype, len(shape)

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        index = list(index) + [slice(None)] * (self.ndim - len(index))
        y, x = self.layout.spatial_axes
        for axis, start in ((y, self.window[0]), (x, self.window[2])):
            item = index[axis]
            if not isinstance(item, slice) or item.step not in (None, 1):
                raise IndexError("a WindowView takes plain slices on its spatial axes")
            lo, hi, _ = item.indices(self.shape[axis])
            index[axis] = slice(start + lo, start + hi)
        return np.asarray(self.image[tuple(index)])

    def __array__(self, dtype=None, copy=None):
        array = self[()]
        return array if dtype is None else array.astype(dtype)


def _fraction(array) -> float:
    from .tiling import blocks

    if isinstance(array, np.ndarray):
        return float(np.mean(array > 0)) if array.size else 0.0
    planes = [()] if array.ndim == 2 else [(z,) for z in range(array.shape[0])]
    count = sum(int(np.count_nonzero(np.asarray(array[(*z, *w)]))) for z in planes for w in blocks(array.shape[-2:]))
    return count / float(np.prod(array.shape))


def _max_label(array) -> int:
    from .tiling import blocks

    planes = [()] if array.ndim == 2 else [(z,) for z in range(array.shape[0])]
    return max((int(np.asarray(array[(*z, *w)]).max(initial=0)) for z in planes for w in blocks(array.shape[-2:])),
               default=0)


class _Shifted:
    """Instance labels of a region moved past the ids already on disk (0 stays background)."""

    def __init__(self, array, by: int) -> None:
        self.array, self.by, self.shape, self.ndim, self.dtype = array, by, array.shape, array.ndim, array.dtype

    def __getitem__(self, index):
        values = np.asarray(self.array[index])
        return np.where(values > 0, values + self.by, 0).astype(values.dtype)


def write_result(result, folder: str | os.PathLike, stem: str, *, shape: tuple[int, ...],
                 region: tuple[int, int, int, int] | None = None, z: int | None = None,
                 placement: Placement | None = None, attributes: dict | None = None) -> Task[dict[str, Path]]:
    """Write the masks (and instances) of a SegmentationResult into OME-Zarr label images.

    Parameters
    ----------
    result : SegmentationResult of the whole image (``region`` None) or of ``region``
    shape : ``(H, W)`` or ``(Z, H, W)`` of the whole image's labels
    region : ``(y0, y1, x0, x1)`` the result covers; the label images are then updated there
    z : the plane of a stack a 2D region result belongs to
    placement, attributes : as for :meth:`LabelImage.create`

    Returns (as the generator's value) role → folder.  A whole-image write
    leaves nothing behind when it fails; a region write leaves each chunk old or new.
    """
    outputs = {role: getattr(result, attr) for role, (attr, _, _) in ROLES.items() if getattr(result, attr) is not None}
    paths = {role: labels_path(folder, stem, role) for role in outputs}
    if region is None:
        with contextlib.ExitStack() as stack:
            for role, array in outputs.items():
                tmp = stack.enter_context(atomic_directory(paths[role]))
                image = _create(tmp, role, shape, placement, attributes)
                yield from image.write_array(array)
                if role == "instances":
                    image.set_attributes(max_label=_max_label(array))
        return paths
    for role, array in outputs.items():
        if not _matches(paths[role], shape):
            with atomic_directory(paths[role]) as tmp:
                _create(tmp, role, shape, placement, attributes)
        image = LabelImage.open(paths[role], mode="r+")
        if role == "instances":
            top = int(image.attributes.get("max_label", 0))
            image.set_attributes(max_label=top + _max_label(array))
            array = _Shifted(array, top)
        yield from image.write_array(array, offset=(region[0], region[2]), z=z)
    return paths


def _create(path: Path, role: str, shape, placement, attributes) -> LabelImage:
    _, dtype, colors = ROLES[role]
    return LabelImage.create(path, shape, dtype, placement, name=role, colors=colors,
                             attributes={**(attributes or {}), "role": role})


def create_role_labels(path: str | os.PathLike, role: str, shape: tuple[int, ...], placement: Placement | None = None,
                       attributes: dict | None = None) -> LabelImage:
    """An empty label image for ``role`` ("autosam", "h", "instances") at ``path``, as :func:`write_result` makes it.

    For writers that fill it piece by piece (the tiles of a dask run).
    """
    return _create(Path(path), role, shape, placement, attributes)


def _matches(path: Path, shape) -> bool:
    try:
        return LabelImage.open(path).shape == tuple(shape)
    except ValueError:
        return False


def segment_to_labels(segmenter, image, folder: str | os.PathLike, stem: str, *,
                      region: tuple[int, int, int, int] | None = None, channel_axis: int | None = None,
                      stack: bool | None = None, placement: Placement | None = None, attributes: dict | None = None,
                      normalization: Normalization | None = None, **kwargs) -> Task[OnDiskResult]:
    """Segment ``image`` (or only ``region = (y0, y1, x0, x1)`` of a 2D image) into label images in ``folder``.

    Parameters
    ----------
    segmenter : Segmenter
    image : array-like, numpy or lazy (only windows are read)
    folder, stem : outputs are ``folder/<stem>_<role>.ome.zarr``
    region : segment only this box (clipped to the image) and update it on disk
    placement, attributes : where the labels sit on the slide, facts to store (slide path, resolution)
    **kwargs : for :meth:`Segmenter.segment` (mode, tile, overlap, channels, cancel, …)

    Returns (as the generator's value) an :class:`OnDiskResult`.
    """
    from .window_steps import whole_image_normalization

    layout = image_layout(image, channel_axis, stack=stack)
    if normalization is None:
        normalization = whole_image_normalization(image, layout, kwargs.get("channels"))
    data = image
    if region is not None:
        if layout.is_stack:
            raise ValueError("a region can be segmented in a single plane only, not in a stack")
        height, width = layout.plane_shape
        y0, y1, x0, x1 = (int(v) for v in region)
        region = (max(0, y0), min(height, y1), max(0, x0), min(width, x1))
        if region[1] <= region[0] or region[3] <= region[2]:
            raise ValueError(f"region {tuple(int(v) for v in (y0, y1, x0, x1))} does not overlap the {height}×{width} image")
        data = WindowView(image, layout, region)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    scratch = scratch_folder(folder, f".{stem}.scratch-")  # a killed run's is removed by the next run
    try:
        result = yield from segmenter.segment(data, channel_axis=channel_axis, normalization=normalization,
                                              store=scratch, stack=layout.is_stack and region is None, **kwargs)
        paths = yield from write_result(result, folder, stem, shape=layout.output_shape, region=region,
                                        placement=placement, attributes=attributes)
        foreground = _fraction(result.autosam_mask if result.autosam_mask is not None else result.h_mask)  # preview: h
    finally:
        remove_scratch(scratch)
    return OnDiskResult(paths, region, result.agreement, result.normalization, foreground, result.cancelled,
                        result.untrained, list(result.messages))
