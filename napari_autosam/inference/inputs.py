"""Where the slices, rows, columns and channels of an input image are, and reading windows of it.

The segmenter accepts numpy arrays and lazy arrays with numpy-style slicing
(``numpy.memmap``, zarr, dask): only the windows asked for are read.  Axis
rules follow :func:`napari_autosam.io.normalize.image_kind` unless
``channel_axis`` is given.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.normalize import guess_channel_axis, image_kind

#: Kinds (from ``image_kind``) that are one plane with channels.
_CHANNEL_PLANES = ("rgb", "rgba", "multichannel")


@dataclass(frozen=True)
class ImageLayout:
    """The axes of an image: which one holds the slices, which one the channels.

    Attributes
    ----------
    shape : the full array shape
    kind : "2d", "rgb", "rgba", "multichannel", "stack" or "stack_rgb"
    channel_axis : axis of the channels in the full array, or None
    stack_axis : axis of the slices (Z) in the full array, or None for one plane
    """

    shape: tuple[int, ...]
    kind: str
    channel_axis: int | None
    stack_axis: int | None

    @property
    def spatial_axes(self) -> tuple[int, int]:
        rest = [a for a in range(len(self.shape)) if a not in (self.channel_axis, self.stack_axis)]
        return rest[0], rest[1]

    @property
    def plane_shape(self) -> tuple[int, int]:
        """``(H, W)`` of one plane."""
        y, x = self.spatial_axes
        return self.shape[y], self.shape[x]

    @property
    def n_planes(self) -> int:
        return 1 if self.stack_axis is None else self.shape[self.stack_axis]

    @property
    def is_stack(self) -> bool:
        return self.stack_axis is not None

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of the masks: ``(H, W)`` or ``(Z, H, W)``."""
        return ((self.n_planes,) if self.is_stack else ()) + self.plane_shape

    @property
    def plane_channel_axis(self) -> int | None:
        """Channel axis of the planes :meth:`read` returns (channels are moved last)."""
        return None if self.channel_axis is None else 2

    def read(self, image, z: int = 0, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Plane ``z`` (only ``window = (y0, y1, x0, x1)`` of it) as ``h×w`` or ``h×w×C`` numpy."""
        y0, y1, x0, x1 = window if window is not None else (0, self.plane_shape[0], 0, self.plane_shape[1])
        index: list = [slice(None)] * len(self.shape)
        y, x = self.spatial_axes
        index[y], index[x] = slice(y0, y1), slice(x0, x1)
        if self.stack_axis is not None:
            index[self.stack_axis] = int(z)
        plane = np.asarray(image[tuple(index)])
        if self.channel_axis is not None:
            # Axis position after the integer index on the stack axis removed one axis before it.
            axis = self.channel_axis - (1 if self.stack_axis is not None and self.stack_axis < self.channel_axis else 0)
            plane = np.moveaxis(plane, axis, -1)
        return plane


def image_layout(image, channel_axis: int | None = None, *, stack: bool | None = None) -> ImageLayout:
    """Find the axes of ``image`` (anything with ``shape``, ``dtype`` and slicing).

    ``stack`` settles what the shape cannot: a 3D array with a short leading
    axis is taken for channels (``(3, Y, X)``) unless ``stack=True`` says it
    is a ``(Z, Y, X)`` stack; ``stack=False`` insists on one plane.

    Raises
    ------
    ValueError
        Empty images, unsupported dtypes, and shapes that are not 2D, RGB(A),
        multichannel, ``(Z, Y, X)`` or ``(Z, Y, X, C)``.
    """
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    shape = tuple(int(s) for s in image.shape)
    layout = _guess(shape, image.dtype, channel_axis, stack)
    if stack is not None and layout.is_stack != stack:
        what = "a stack (Z, Y, X[, C])" if stack else "one plane"
        raise ValueError(f"an image of shape {shape} cannot be {what}" +
                         (f" with channel_axis={channel_axis}" if channel_axis is not None else ""))
    return layout


def _guess(shape: tuple[int, ...], dtype, channel_axis: int | None, stack: bool | None) -> ImageLayout:
    if channel_axis is None:
        kind = image_kind(shape, dtype)
        if kind == "2d":
            return ImageLayout(shape, kind, None, None)
        if kind == "stack" or (stack and len(shape) == 3):
            return ImageLayout(shape, "stack", None, 0)
        if kind == "stack_rgb":
            return ImageLayout(shape, kind, 3, 0)
        return ImageLayout(shape, kind, guess_channel_axis(shape, dtype), None)
    if len(shape) not in (3, 4):
        raise ValueError(f"channel_axis={channel_axis} needs a 3D (Y, X, C) or 4D (Z, Y, X, C) image, got shape {shape}")
    if not -len(shape) <= channel_axis < len(shape):
        raise ValueError(f"channel_axis={channel_axis} is out of range for an image of shape {shape}")
    axis = channel_axis % len(shape)
    spatial = tuple(s for a, s in enumerate(shape) if a != axis)
    image_kind(spatial[-2:], dtype)  # checks the dtype and emptiness
    if len(shape) == 3:
        return ImageLayout(shape, "multichannel", axis, None)
    return ImageLayout(shape, "stack_rgb", axis, next(a for a in range(4) if a != axis))
