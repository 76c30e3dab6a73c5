"""SAM prompts given in image coordinates of one plane: which window, how it looks to SAM, and back.

Interactive correction clicks on a (possibly huge, possibly stacked,
possibly multichannel) image.  SAM answers prompts on one RGB window at a
time, with that window's cached embedding.  :func:`prompt_window` picks the
window (the whole plane, or the segmentation tile that holds the first
prompt), reads only that window of the plane, normalises it the way the
segmentation did, and remembers its offset; :func:`prompt_in_window` converts
points and a box from plane coordinates ``(y, x)`` into the window's ``(x, y)``
and returns SAM's mask for the window.  No napari or Qt here: the widget
passes in what the user drew and paints what comes back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..io.normalize import Normalization, compute_normalization, to_rgb_uint8
from .inputs import ImageLayout
from .tiling import DEFAULT_OVERLAP, segmentation_tiles


@dataclass(frozen=True)
class PromptWindow:
    """The window of plane ``z`` that SAM prompts work in.

    Attributes
    ----------
    z : int
        The plane (0 for single-plane images).
    window : (y0, y1, x0, x1)
        Its pixels in the plane.
    rgb : ``h×w×3`` uint8
        The window as SAM sees it (normalised like the segmentation; the
        embedding-cache key).
    """

    z: int
    window: tuple[int, int, int, int]
    rgb: np.ndarray

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(rows, columns)`` of the window in the plane."""
        y0, y1, x0, x1 = self.window
        return slice(y0, y1), slice(x0, x1)

    def contains(self, y: float, x: float) -> bool:
        y0, y1, x0, x1 = self.window
        return y0 <= y < y1 and x0 <= x < x1

    def to_window(self, points_yx=None, box_yxyx=None) -> dict:
        """Keyword arguments of :meth:`Segmenter.prompt`: ``points`` as window ``(x, y)``, ``box`` as ``(x0, y0, x1, y1)``.

        Parameters
        ----------
        points_yx : N×2 array of ``(y, x)`` in plane pixels, or None
        box_yxyx : ``(y0, x0, y1, x1)`` in plane pixels, or None
        """
        y0, _, x0, _ = self.window
        out = {}
        if points_yx is not None and len(points_yx):
            out["points"] = np.asarray(points_yx, dtype=float).reshape(-1, 2)[:, ::-1] - (x0, y0)
        if box_yxyx is not None:
            by0, bx0, by1, bx1 = (float(v) for v in box_yxyx)
            out["box"] = (bx0 - x0, by0 - y0, bx1 - x0, by1 - y0)
        return out


def window_for(plane_shape: tuple[int, int], anchor_yx: tuple[float, float], tile: int | None,
               overlap: int) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: the whole plane when ``tile`` is None, else the tile whose core holds the anchor.

    The tiles are the segmenter's own (:func:`~napari_autosam.inference.tiling.segmentation_tiles`),
    so the window's embedding is the one segmentation cached.
    """
    height, width = plane_shape
    if tile is None:
        return 0, height, 0, width
    y, x = anchor_yx
    tiles = segmentation_tiles((height, width), tile, overlap)
    for candidate in tiles:
        y0, y1, x0, x1 = candidate.core
        if y0 <= y < y1 and x0 <= x < x1:
            return candidate.window
    return tiles[0].window


def prompt_window(image, layout: ImageLayout, z: int, anchor_yx: tuple[float, float], *,
                  normalization: Normalization | None = None, tile: int | None = None,
                  overlap: int = DEFAULT_OVERLAP) -> PromptWindow:
    """Read and normalise the window of plane ``z`` that prompts near ``anchor_yx = (y, x)`` work in.

    Parameters
    ----------
    image : the full image (numpy or lazy array), with axes as ``layout`` says
    layout : from :func:`~napari_autosam.inference.inputs.image_layout`
    normalization : the scaling the segmentation used (``SegmentationResult.normalization``);
        None computes one over the whole image
    tile, overlap : the segmentation's tiling (None: the whole plane; the widget passes
        :func:`~napari_autosam.inference.tiling.auto_tile` of the plane, the rule segmentation uses)
    """
    if not 0 <= z < layout.n_planes:
        raise ValueError(f"slice {z} is out of range for {layout.n_planes} slices")
    window = window_for(layout.plane_shape, anchor_yx, tile, overlap)
    if normalization is None:
        normalization = compute_normalization(image, channel_axis=layout.channel_axis)
    plane = layout.read(image, z, window)
    rgb = to_rgb_uint8(plane, channel_axis=layout.plane_channel_axis, normalization=normalization)[0]
    return PromptWindow(int(z), tuple(int(v) for v in window), rgb)


def prompt_in_window(segmenter, window: PromptWindow, *, points_yx=None, labels=None, box_yxyx=None,
                     dense: str = "sam") -> np.ndarray:
    """SAM's mask (``h×w`` bool, the window's shape) for prompts given in plane coordinates.

    ``labels``: 1 for positive, 0 for negative points.  ``dense`` as for
    :meth:`~napari_autosam.inference.Segmenter.prompt`.
    """
    kwargs = window.to_window(points_yx, box_yxyx)
    if "points" in kwargs and labels is not None:
        kwargs["labels"] = np.asarray(labels, dtype=float).reshape(-1)
    mask, _score = segmenter.prompt(window.rgb, dense=dense, **kwargs)
    return mask
