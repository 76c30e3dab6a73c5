"""The napari layers the widget reads and writes, and how their axes map onto the image's.

An image layer is segmented into Labels layers that cover its spatial axes
(``Y×X``, or ``Z×Y×X`` for stacks); each output layer records in its
metadata which image it belongs to and what it holds (its *role*), so the
widget finds it again even after the user renames it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from napari.layers import Image, Labels
from napari.utils.colormaps import DirectLabelColormap

from . import avoid_triton_llvm_clash

avoid_triton_llvm_clash()  # before torch's chain of imports (see napari_autosam._qt)

from ..inference.inputs import ImageLayout, image_layout  # noqa: E402

META_KEY = "autosam"

#: Colours of objects drawn with SAM prompts (labels 2, 3, …), distinct from label 1's cyan.
OBJECT_COLORS = ("#ffe119", "#f58231", "#3cb44b", "#e6194b", "#911eb4", "#f032e6", "#bcf60c", "#fabebe",
                 "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000", "#ffd8b1")


def _autosam_colors() -> dict:
    """Label 1 (the automatic mask) in bright cyan, visible on H&E and fluorescence; objects drawn
    with prompts (2, 3, …) in other distinct colours."""
    colors = {None: "transparent", 0: "transparent", 1: "#00e5ff"}
    colors.update({i: OBJECT_COLORS[(i - 2) % len(OBJECT_COLORS)] for i in range(2, 256)})
    return colors


#: role → (default layer name, dtype, colours or None for napari's label colours)
ROLES: dict[str, tuple[str, type, dict | str | None]] = {
    "autosam": ("AutoSAM", np.uint8, "autosam"),
    "h": ("h(g(I))", np.uint8, {None: "transparent", 0: "transparent", 1: "#ff8c1a"}),
    "instances": ("instances", np.int32, None),
    "disagreement": ("disagreement", np.uint8, {None: "transparent", 0: "transparent", 1: "#ffe119", 2: "#f032e6"}),
}


@dataclass
class ImageTarget:
    """An image layer prepared for segmentation: its full-resolution data and axes."""

    layer: Image
    data: object  # numpy or lazy array (full resolution of a multiscale layer)
    layout: ImageLayout

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def is_stack(self) -> bool:
        return self.layout.is_stack

    @property
    def plane_shape(self) -> tuple[int, int]:
        return self.layout.plane_shape

    @property
    def source(self) -> str:
        path = getattr(self.layer.source, "path", None)
        return str(path or self.layer.metadata.get("source") or f"layer {self.layer.name}")

    def spatial_axes(self) -> list[int]:
        """Axes of the layer (napari's, without an RGB axis) that the outputs cover."""
        axes = [a for a in range(len(self.layout.shape)) if a != self.layout.channel_axis]
        return [a for a in axes if a < self.layer.ndim]

    def output_transform(self) -> dict:
        axes = self.spatial_axes()
        return {"scale": [self.layer.scale[a] for a in axes], "translate": [self.layer.translate[a] for a in axes],
                **_units(self.layer, axes)}


def _units(layer, axes) -> dict:
    """The image layer's physical units on ``axes`` (µm on a slide), so outputs overlay it without napari's
    "inconsistent units" warning; empty where the layer has none."""
    units = getattr(layer, "units", None)
    return {"units": [units[a] for a in axes]} if units is not None and len(units) > max(axes, default=-1) else {}


def image_target(layer: Image) -> ImageTarget:
    """Wrap an image layer; raises ValueError for layouts the segmenter cannot read."""
    data = layer.data[0] if layer.multiscale else layer.data
    channel_axis = layer.ndim if layer.rgb else None
    return ImageTarget(layer, data, image_layout(data, channel_axis))


def role_of(layer) -> tuple[str | None, str | None]:
    """``(image name, role)`` recorded in a layer's metadata, or ``(None, None)``."""
    info = layer.metadata.get(META_KEY) if isinstance(layer.metadata, dict) else None
    if not isinstance(info, dict):
        return None, None
    return info.get("image"), info.get("role")


def find_output(viewer, image_name: str, role: str) -> Labels | None:
    for layer in viewer.layers:
        if isinstance(layer, Labels) and role_of(layer) == (image_name, role):
            return layer
    return None


def _free_name(viewer, base: str, image_name: str) -> str:
    if base not in viewer.layers:
        return base
    return f"{base} [{image_name}]"


def ensure_output(viewer, target: ImageTarget, role: str) -> Labels:
    """The output layer of ``role`` for the image, created (all zeros) if missing or of the wrong shape."""
    shape = target.layout.output_shape
    layer = find_output(viewer, target.name, role)
    if layer is not None and tuple(layer.data.shape) == tuple(shape):
        return layer
    if layer is not None:
        viewer.layers.remove(layer)
    base, dtype, colors = ROLES[role]
    kwargs = {"name": _free_name(viewer, base, target.name), "metadata": {META_KEY: {"image": target.name, "role": role}},
              **target.output_transform()}
    if colors == "autosam":
        colors = _autosam_colors()
    if colors is not None:
        kwargs["colormap"] = DirectLabelColormap(color_dict=colors)
    if role == "disagreement":
        kwargs["opacity"] = 0.8
    return viewer.add_labels(np.zeros(shape, dtype=dtype), **kwargs)


def current_plane(viewer, target: ImageTarget) -> int:
    """Index of the slice of a stack the viewer shows (0 for single planes)."""
    if not target.is_stack:
        return 0
    point = target.layer.world_to_data(viewer.dims.point)
    axis = target.layout.stack_axis
    return int(np.clip(np.round(point[axis]), 0, target.layout.n_planes - 1))


def camera_of(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    return viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera


def visible_region(viewer, target: ImageTarget) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)`` of the plane the canvas shows, in full-resolution pixels, clipped to the image.

    Computed from the camera (centre, zoom) and the canvas size, so it does
    not depend on what has been drawn yet, nor on the pyramid level shown.
    """
    canvas = getattr(viewer, "canvas", None)
    size = np.asarray(getattr(canvas, "size", None) or viewer.window._qt_viewer.canvas.size, dtype=float)
    if canvas is not None and hasattr(canvas, "viewbox_size"):
        size = np.asarray(canvas.viewbox_size(viewer.layers), dtype=float)
    camera = camera_of(viewer)
    half = size / camera.zoom / 2  # world units, (rows, columns) of the displayed plane
    displayed = list(viewer.dims.displayed)[-2:]
    low, high = np.asarray(viewer.dims.point, dtype=float), np.asarray(viewer.dims.point, dtype=float)
    center = np.asarray(camera.center, dtype=float)[-2:]
    for axis, c, h in zip(displayed, center, half):
        low[axis], high[axis] = c - h, c + h
    corners = np.stack([target.layer.world_to_data(low), target.layer.world_to_data(high)])
    y_axis, x_axis = target.layout.spatial_axes
    height, width = target.plane_shape
    ys, xs = np.sort(corners[:, y_axis]), np.sort(corners[:, x_axis])
    y0, y1 = int(max(0, np.floor(ys[0]))), int(min(height, np.ceil(ys[1]) + 1))
    x0, x1 = int(max(0, np.floor(xs[0]))), int(min(width, np.ceil(xs[1]) + 1))
    if y1 <= y0 or x1 <= x0:
        raise ValueError("the canvas does not show any part of the image; pan to it first")
    return y0, y1, x0, x1


def plane_index(target: ImageTarget, z: int) -> tuple:
    """Index into an output layer's data for plane ``z``."""
    return (z,) if target.is_stack else ()


#: Roles of the outputs that are dimmed while the AutoSAM layer is being corrected.
DIMMED_WHILE_EDITING = {"h": 0.35, "instances": 0.35, "disagreement": 0.0}


def focus_for_editing(viewer, image_name: str) -> Labels | None:
    """Make the image's AutoSAM layer the one being edited: on top of the masks, visible, selected.

    The other outputs of that image are dimmed (h(g(I)), instances) or hidden
    (disagreement), so paint on the AutoSAM layer is never drawn under them;
    SAM prompt layers stay above it.  Returns the AutoSAM layer (None if missing).
    """
    layer = find_output(viewer, image_name, "autosam")
    if layer is None:
        return None
    layers = viewer.layers
    prompts = [i for i, other in enumerate(layers) if role_of(other)[1] in ("points", "box")]
    top = min(prompts) if prompts else len(layers)
    index = layers.index(layer)
    if index < top - 1:
        layers.move(index, top)  # napari's move puts it just before ``top``
    layer.visible = True
    layer.opacity = max(layer.opacity, 0.7)
    for other in layers:
        owner, role = role_of(other)
        if owner == image_name and role in DIMMED_WHILE_EDITING:
            opacity = DIMMED_WHILE_EDITING[role]
            other.visible = opacity > 0 and other.visible
            if opacity > 0:
                other.opacity = opacity
    viewer.layers.selection.active = layer
    return layer
