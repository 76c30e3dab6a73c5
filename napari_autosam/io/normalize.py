"""Turn any microscopy image into SAM's input: an ``H×W×3`` ``uint8`` RGB array.

Intensities are scaled robustly between two percentiles of the finite
values.  The bounds are returned as a :class:`Normalization` so the same
scaling can be reused on every tile of a large image, on every slice of a
stack, or when the image is opened again later.

Axis conventions (see :func:`image_kind`): spatial axes are ``(Y, X)`` or
``(Z, Y, X)``; a channel axis is either first (``C, Y, X``) or last
(``Y, X, C``), or named explicitly with ``channel_axis=``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MAX_CHANNELS", "Normalization", "compute_normalization", "image_kind", "to_rgb_uint8"]

MAX_CHANNELS = 16
"""A trailing axis longer than this is never taken for channels."""

_SUPPORTED_DTYPE_KINDS = "biuf"  # bool, signed and unsigned integers, floats


@dataclass(frozen=True)
class Normalization:
    """How an image was scaled to 0..255; reusing it reproduces the scaling exactly.

    Attributes
    ----------
    low, high : float or tuple of float
        Intensities mapped to 0 and 255.  A tuple holds one value per entry
        of ``channels`` (channels scaled independently); a float applies to
        every channel.  ``high <= low`` marks a degenerate scaling (constant
        image, or no finite values) and produces zeros.
    percentiles : (float, float)
        The percentiles that gave ``low`` and ``high``; ``(0, 100)`` for
        fixed bounds (``uint8`` RGB pass-through, ``bool`` images).
    channels : tuple of int or None
        Channels shown as gray (one), as R,G (two) or as R,G,B (three);
        ``None`` for grayscale images and ``uint8`` RGB(A) passed through.
    """

    low: float | tuple[float, ...]
    high: float | tuple[float, ...]
    percentiles: tuple[float, float] = (0.5, 99.5)
    channels: tuple[int, ...] | None = None

    @classmethod
    def identity(cls) -> Normalization:
        """The scaling of ``uint8`` RGB images, which pass through unchanged."""
        return cls(low=0.0, high=255.0, percentiles=(0.0, 100.0), channels=None)

    @property
    def is_degenerate(self) -> bool:
        """True when every channel has ``high <= low``: the image maps to all zeros."""
        return all(h <= lo for lo, h in zip(np.atleast_1d(self.low), np.atleast_1d(self.high)))

    def bounds(self, n_channels: int) -> list[tuple[float, float]]:
        """``(low, high)`` for each of ``n_channels`` output channels."""
        lows, highs = np.atleast_1d(self.low), np.atleast_1d(self.high)
        if len(lows) == 1:
            return [(float(lows[0]), float(highs[0]))] * n_channels
        if len(lows) != n_channels:
            raise ValueError(f"normalization has bounds for {len(lows)} channels but {n_channels} are used")
        return [(float(lo), float(h)) for lo, h in zip(lows, highs)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dictionary."""

        def plain(value):
            return [float(v) for v in value] if isinstance(value, tuple) else float(value)

        return {
            "low": plain(self.low),
            "high": plain(self.high),
            "percentiles": [float(p) for p in self.percentiles],
            "channels": None if self.channels is None else [int(c) for c in self.channels],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalization:
        """Inverse of :meth:`to_dict`."""

        def value(v):
            return tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else float(v)

        channels = data.get("channels")
        return cls(
            low=value(data["low"]),
            high=value(data["high"]),
            percentiles=tuple(float(p) for p in data.get("percentiles", (0.5, 99.5))),
            channels=None if channels is None else tuple(int(c) for c in channels),
        )


def _small_last_axis(shape: tuple[int, ...]) -> bool:
    """The trailing axis looks like channels: few entries, fewer than each spatial axis."""
    last = shape[-1]
    return last in (3, 4) or (last <= MAX_CHANNELS and all(last < s for s in shape[-3:-1]))


def image_kind(shape: Sequence[int], dtype: Any = np.float32) -> str:
    """Classify an array shape as one of the layouts this package understands.

    ================  ==========================  ==================================
    kind              shape                       rule
    ================  ==========================  ==================================
    ``"2d"``          ``(Y, X)``                  any 2D array
    ``"rgb"``         ``(Y, X, 3)``               trailing axis of 3
    ``"rgba"``        ``(Y, X, 4)``               trailing axis of 4
    ``"multichannel"`` ``(Y, X, C)``              trailing axis of 2 or 5..16 that is
                                                  shorter than both other axes
    ``"multichannel"`` ``(C, Y, X)``              otherwise, leading axis of 1..4
    ``"stack"``       ``(Z, Y, X)``               otherwise (leading axis of 5 or more)
    ``"stack_rgb"``   ``(Z, Y, X, 3|4|C)``        4D with a channel-like trailing axis
    ================  ==========================  ==================================

    The rules are checked top to bottom, so they settle the ambiguous cases:
    a trailing 3 or 4 always means colour (``(5, 256, 3)`` is RGB), and a
    leading axis of at most 4 means channels, never slices (``(3, Y, X)`` is
    a 3-channel image, not a 3-slice stack).  Pass ``channel_axis=`` to the
    functions below to override this.

    Raises
    ------
    ValueError
        For 1D or 5D+ shapes, 4D shapes without a trailing channel axis,
        empty shapes and dtypes that are not bool, integer or float.
    """
    shape = _check_shape_and_dtype(shape, dtype)
    if len(shape) == 2:
        return "2d"
    if len(shape) == 3:
        if shape[-1] in (3, 4):
            return "rgb" if shape[-1] == 3 else "rgba"
        if _small_last_axis(shape) or shape[0] <= 4:
            return "multichannel"
        return "stack"
    if len(shape) == 4 and _small_last_axis(shape):
        return "stack_rgb"
    if len(shape) == 4:
        raise ValueError(f"4D image of shape {shape} is ambiguous: expected (Z, Y, X, C) with channels last")
    raise ValueError(f"{len(shape)}D image of shape {shape} is not supported: expected 2D (Y, X) or 3D/4D with channels")


def guess_channel_axis(shape: Sequence[int], dtype: Any = np.float32) -> int | None:
    """The channel axis :func:`image_kind` implies: None for ``"2d"`` and ``"stack"``, the last axis when
    it looks like channels, else the first (``(C, Y, X)``).  The one place the package guesses it."""
    kind = image_kind(shape, dtype)
    if kind in ("2d", "stack"):
        return None
    return len(shape) - 1 if _small_last_axis(tuple(int(s) for s in shape)) else 0


def _check_shape_and_dtype(shape: Sequence[int], dtype: Any) -> tuple[int, ...]:
    shape = tuple(int(s) for s in shape)
    if np.dtype(dtype).kind not in _SUPPORTED_DTYPE_KINDS:
        raise ValueError(f"unsupported image dtype {np.dtype(dtype)}: expected bool, integer or float")
    if any(s == 0 for s in shape):
        raise ValueError(f"image is empty (shape {shape})")
    return shape


@dataclass(frozen=True)
class _Layout:
    """Where the channels are and which of them are shown."""

    channel_axis: int | None  # non-negative; None for grayscale planes and stacks
    channels: tuple[int, ...] | None  # None with channel_axis means uint8 RGB(A) pass-through
    kind: str


def _resolve_layout(shape, dtype, channel_axis, channels, *, allow_stack: bool) -> _Layout:
    """Find the channel axis (from ``channel_axis`` or :func:`image_kind`) and the channels to show."""
    shape = _check_shape_and_dtype(shape, dtype)
    if channel_axis is not None:
        if len(shape) != 3 and not (len(shape) == 4 and allow_stack):
            raise ValueError(f"channel_axis={channel_axis} needs a 3D image (Y, X, C) or (C, Y, X), got shape {shape}")
        if not -len(shape) <= channel_axis < len(shape):
            raise ValueError(f"channel_axis={channel_axis} out of range for shape {shape}")
        axis = channel_axis % len(shape)
        kind = "multichannel" if len(shape) == 3 else "stack_rgb"
    else:
        kind = image_kind(shape, dtype)
        if kind.startswith("stack") and not allow_stack:
            raise ValueError(f"expected one 2D plane but got a stack of shape {shape}; pass image[z] or channel_axis=")
        if kind in ("2d", "stack"):
            if channels is not None:
                raise ValueError(f"channels={tuple(channels)} given for a single-channel image of shape {shape}")
            return _Layout(None, None, kind)
        axis = guess_channel_axis(shape, dtype)
    return _Layout(axis, _resolve_channels(shape[axis], np.dtype(dtype), channels), kind)


def _resolve_channels(n_channels: int, dtype: np.dtype, channels) -> tuple[int, ...] | None:
    """Default and validate the channel selection (None = uint8 RGB(A) pass-through)."""
    passthrough = dtype == np.uint8 and n_channels in (3, 4)
    if channels is None:
        return None if passthrough else ((0, 1, 2) if n_channels in (3, 4) else (0,))
    channels = tuple(int(c) for c in channels)
    if not 1 <= len(channels) <= 3:
        raise ValueError(f"channels must name 1 to 3 channels (gray or R,G[,B]), got {channels}")
    for c in channels:
        if not -n_channels <= c < n_channels:
            raise ValueError(f"channel {c} out of range for an image with {n_channels} channels")
    channels = tuple(c % n_channels for c in channels)
    return None if passthrough and channels == (0, 1, 2) else channels


def _strided_sample(image, channel_axis: int | None, max_samples: int) -> np.ndarray:
    """Read at most about ``max_samples`` pixels (per channel) on a regular grid, without loading the whole array."""
    spatial = [s for axis, s in enumerate(image.shape) if axis != channel_axis]
    total = float(np.prod(spatial))
    step = max(1, int(np.ceil((total / max(int(max_samples), 1)) ** (1.0 / len(spatial)))))
    index = tuple(slice(None) if axis == channel_axis else slice(None, None, step) for axis in range(image.ndim))
    return np.asarray(image[index])


def _percentile_bounds(values: np.ndarray, percentiles: tuple[float, float]) -> tuple[float, float]:
    """Robust bounds of the finite values; (0, 0) when there are none."""
    values = values.ravel()
    if values.dtype == bool:
        return 0.0, 1.0
    if values.dtype.kind == "f":
        values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 0.0
    low, high = (float(v) for v in np.percentile(values, percentiles))
    if high <= low:  # e.g. sparse bright objects on zeros: fall back to the full range
        low, high = float(values.min()), float(values.max())
    return low, high


def compute_normalization(
    image,
    *,
    channel_axis: int | None = None,
    channels: Sequence[int] | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
    max_samples: int = 1 << 20,
) -> Normalization:
    """Percentile bounds for ``image``, from a strided subsample of at most ``max_samples`` pixels.

    ``image`` may be a numpy array or any lazy array with numpy-style
    slicing (``numpy.memmap``, zarr, dask): only the subsample is held in
    memory (a chunked store still decodes each chunk the grid touches).  It
    may be a 2D plane, a multichannel plane or a whole ``(Z, Y, X[, C])``
    stack, whose slices then all share one scaling.  For a huge pyramid,
    passing a low-resolution level is cheaper and gives nearly the same bounds.

    Rules: ``uint8`` RGB(A) gets :meth:`Normalization.identity`; ``bool``
    gets fixed bounds (0, 1); float RGB(A) with all values in [0, 1] gets
    fixed joint bounds (0, 1) so colours are kept; otherwise each selected
    channel gets its own percentile bounds of its finite values.
    """
    percentiles = (float(percentiles[0]), float(percentiles[1]))
    if not 0.0 <= percentiles[0] < percentiles[1] <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    layout = _resolve_layout(image.shape, image.dtype, channel_axis, channels, allow_stack=True)
    if layout.channel_axis is not None and layout.channels is None:
        return Normalization.identity()
    sample = _strided_sample(image, layout.channel_axis, max_samples)
    if layout.channel_axis is None:
        low, high = _percentile_bounds(sample, percentiles)
        return Normalization(low, high, percentiles, None)
    planes = [np.take(sample, c, axis=layout.channel_axis) for c in layout.channels]
    if sample.dtype.kind == "f" and layout.kind in ("rgb", "rgba") and layout.channels == (0, 1, 2):
        finite = np.concatenate([p[np.isfinite(p)] for p in planes])
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            return Normalization(0.0, 1.0, (0.0, 100.0), layout.channels)
    bounds = [_percentile_bounds(p, percentiles) for p in planes]
    if len(bounds) == 1:
        return Normalization(bounds[0][0], bounds[0][1], percentiles, layout.channels)
    lows, highs = zip(*bounds)
    return Normalization(tuple(lows), tuple(highs), percentiles, layout.channels)


def _scale_plane(plane: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map ``[low, high]`` linearly to 0..255 (clipped); non-finite values and degenerate bounds give 0."""
    if high <= low:
        return np.zeros(plane.shape, np.uint8)
    work = plane.astype(np.float64 if plane.dtype.itemsize >= 8 else np.float32, copy=False)
    with np.errstate(over="ignore", invalid="ignore"):
        out = (work - low) * (255.0 / (high - low))
        np.clip(out, 0.0, 255.0, out=out)
    if plane.dtype.kind == "f":
        out[~np.isfinite(work)] = 0.0
    return np.rint(out).astype(np.uint8)


def to_rgb_uint8(
    image: np.ndarray,
    *,
    channel_axis: int | None = None,
    channels: Sequence[int] | None = None,
    percentiles: tuple[float, float] = (0.5, 99.5),
    normalization: Normalization | None = None,
) -> tuple[np.ndarray, Normalization]:
    """Convert one 2D image plane to SAM's input.

    Parameters
    ----------
    image : array
        ``(Y, X)`` of any bool/int/float dtype, ``(Y, X, 3|4)`` RGB(A), or
        multichannel ``(C, Y, X)`` / ``(Y, X, C)``; layouts follow
        :func:`image_kind` unless ``channel_axis`` is given.
    channel_axis : int, optional
        Axis holding the channels of a 3D array.
    channels : sequence of 1 to 3 ints, optional
        One channel shown as gray, or up to three mapped to R, G, B (a
        missing blue stays 0), each scaled independently.  Default: the
        first channel, or channels 0, 1, 2 when there are 3 or 4.
    percentiles : (low, high)
        Percentiles of the finite values mapped to 0 and 255.
    normalization : Normalization, optional
        Reuse these bounds (and channels, unless ``channels`` is given)
        instead of computing new ones, e.g. for every tile of a big image.

    Returns
    -------
    rgb : ndarray
        ``(Y, X, 3)`` uint8, C-contiguous, never a view of ``image``.
        ``uint8`` RGB passes through unchanged and RGBA loses its alpha.
        NaN and inf become 0; a constant or all-NaN image becomes all zeros.
    normalization : Normalization
        The scaling used.

    Raises
    ------
    ValueError
        For empty arrays, 1D or 4D+ arrays, stacks and bad channel choices.
    """
    image = _plane_array(image)
    if channels is None and normalization is not None:
        channels = normalization.channels
    layout = _resolve_layout(image.shape, image.dtype, channel_axis, channels, allow_stack=False)
    if normalization is None:
        normalization = compute_normalization(image, channel_axis=channel_axis, channels=channels, percentiles=percentiles)
    if layout.channel_axis is None:
        planes = [image]
    else:
        picked = layout.channels if layout.channels is not None else (0, 1, 2)
        planes = [np.take(image, c, axis=layout.channel_axis) for c in picked]
        if layout.channels is None and normalization == Normalization.identity():
            return np.stack(planes, axis=-1), normalization
    bounds = normalization.bounds(len(planes))
    scaled = [_scale_plane(plane, low, high) for plane, (low, high) in zip(planes, bounds)]
    return _as_rgb(scaled), normalization


def _plane_array(image) -> np.ndarray:
    """``image`` as an array, or ValueError when it is empty or not 2D / 3D."""
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    if image.ndim not in (2, 3):
        raise ValueError(f"expected a 2D image (Y, X) or (Y, X, C)/(C, Y, X), got {image.ndim}D shape {image.shape}")
    return image


def _as_rgb(scaled: list[np.ndarray]) -> np.ndarray:
    """One scaled plane as gray (three times), two as R, G with an empty blue, three as R, G, B."""
    if len(scaled) == 1:
        scaled = scaled * 3
    elif len(scaled) == 2:
        scaled.append(np.zeros_like(scaled[0]))
    return np.stack(scaled, axis=-1)
