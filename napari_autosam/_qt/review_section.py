"""Section 6, Review: where to correct next, regions sorted by how unsure the model is.

"Review" segments the chosen image tile by tile (or its slices) with
:func:`napari_autosam.inference.review_scores.review`, fills the AutoSAM / h(g(I))
layers as Segment does, lists the regions highest score first and shows the
scores as a coarse heat map over the image.  "Go to next" moves the camera
onto the next region, marks it in a "review region" layer and selects the
AutoSAM layer in paint mode; accepting the correction (section 4) takes the
region off the list.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QListWidget, QPushButton, QVBoxLayout, QWidget

from ..inference.tiling import REVIEW_OVERLAP, REVIEW_TILE, review_tile
from ..io.working import box_edges, cell_transform
from . import notify
from .layers import ImageTarget, find_output

#: Regions are the review tiles (planes no larger are one region): the one default of the CLI and the engine.
TILE, OVERLAP = REVIEW_TILE, REVIEW_OVERLAP
HEATMAP = "review scores"
REGION_LAYER = "review region"


def _camera(viewer):
    return viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari 0.9 moved it


def _canvas_size(viewer) -> np.ndarray:
    canvas = getattr(viewer, "canvas", None)
    size = getattr(canvas, "size", None) or viewer.window._qt_viewer.canvas.size
    return np.asarray(size, dtype=float)


def region_corners(target: ImageTarget, region, z: int = 0) -> np.ndarray:
    """World coordinates (displayed y, x) of a region's outer pixel edges: ``[[y0, x0], [y1, x1]]``.

    Uses the placement of the target's outputs (``output_transform``), so a
    region of a working-resolution image lands on the slide where it belongs.
    """
    transform = target.output_transform()
    return box_edges(region, transform["scale"], transform["translate"])


def show_region(viewer, target: ImageTarget, region, z: int = 0) -> None:
    """Centre the camera on ``region`` (``(y0, y1, x0, x1)`` of plane ``z``) and zoom so it fills the canvas."""
    corners = region_corners(target, region, z)
    if target.is_stack:
        step = list(viewer.dims.current_step)
        step[target.layout.stack_axis] = z
        viewer.dims.current_step = tuple(step)
    camera = _camera(viewer)
    extent = np.abs(corners[1] - corners[0])
    camera.center = tuple(corners.mean(axis=0))
    camera.zoom = float(np.min(_canvas_size(viewer) / np.maximum(extent, 1e-6)))


def _on_disk(layer) -> bool:
    """Whether a labels layer is the lazy on-disk kind napari cannot paint (edited through a region copy)."""
    try:
        from .slide_layers import is_on_disk
    except ImportError:  # before the on-disk labels exist, every output layer is in memory
        return False
    return bool(is_on_disk(layer))


class ReviewSection(QWidget):
    """Rank the regions of an image by the model's unsureness and step through them."""

    def __init__(self, viewer, session, segment_section, correct_section=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.session = session
        self.segment_section = segment_section
        self.correct_section = correct_section  # its region editor (big images) opens a region for editing
        self.runner = segment_section.runner  # a review is a segmentation: one at a time with Segment
        self.tile, self.overlap = TILE, OVERLAP
        self.regions: list = []  # RegionScore, highest first, accepted ones removed
        self.current = None
        self.target: ImageTarget | None = None

        self.preview_check = QCheckBox("Fast (h only)")
        self.preview_check.setToolTip("Score with h(g(I)) alone, without SAM: much faster, but only the share of "
                                      "unsure probabilities counts (no h/AutoSAM disagreement, no SAM IoU)")
        self.review_button = QPushButton("Review")
        self.review_button.setToolTip("Segment the image in regions and list them by how unsure the model is: "
                                      "1 − Dice(h, AutoSAM), probabilities near 0.5 and SAM's predicted IoU")
        self.review_button.clicked.connect(lambda: self.review())
        self.next_button = QPushButton("Go to next")
        self.next_button.setToolTip("Move to the most unsure region not yet accepted and open it for editing")
        self.next_button.clicked.connect(lambda: self.go_to_next())
        self.list = QListWidget()
        self.list.setToolTip("Regions, most unsure first; double-click one to go there; accepted ones leave")
        self.list.setMaximumHeight(140)
        self.list.itemDoubleClicked.connect(lambda item: self.go_to(self.list.row(item)))
        self.note = QLabel("")
        self.note.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.review_button)
        buttons.addWidget(self.next_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.preview_check)
        layout.addLayout(buttons)
        layout.addWidget(self.list)
        layout.addWidget(self.note)
        session.annotations_changed.connect(self.accepted)

    # ---------------------------------------------------------------- run

    def review(self) -> bool:
        """Score the regions of the image chosen in the Segment section (loads SAM first if needed)."""
        from ..inference.review_scores import review

        target = self.segment_section.target()
        if target is None:
            return False
        if self.session.segmenter is None:
            return self.segment_section.model_section.load(then=self.review)
        try:  # a slide is reviewed at the working resolution the Segment section shows
            target = self.segment_section._at_resolution(target, self.segment_section.resolution_request())
        except ValueError as exc:
            notify.error(f"Reviewing {target.name}", exc)
            return False
        segmenter, preview = self.session.segmenter, self.preview_check.isChecked()
        tile = review_tile(target.plane_shape, self.tile)
        label = self.session.model_label

        def make_task(token):
            return review(segmenter, target.data, tile=tile, overlap=self.overlap, preview=preview, cancel=token,
                          channel_axis=target.layout.channel_axis, stack=target.is_stack)

        def done(outcome) -> None:
            regions, result = outcome
            scope = "stack" if target.is_stack else "image"
            self.segment_section._show(target, result, scope, 0, None, label)
            self.show_regions(target, regions)

        return self.runner.start(f"Reviewing {target.name}", make_task, done)

    # ---------------------------------------------------------------- results

    def show_regions(self, target: ImageTarget, regions: list) -> None:
        """List ``regions`` (highest score first) and draw the heat map of their scores."""
        self.target, self.regions, self.current = target, list(regions), None
        self._fill_list()
        self._heatmap(target, regions)
        self.note.setText(f"{len(regions)} region(s) of {target.name}; the most unsure scores "
                          f"{regions[0].score:.2f}." if regions else "Nothing was scored.")

    def _fill_list(self) -> None:
        self.list.clear()
        for r in self.regions:
            y0, y1, x0, x1 = r.region
            where = f"slice {r.z}, " if self.target is not None and self.target.is_stack else ""
            self.list.addItem(f"{r.score:.2f}  {where}x {x0}–{x1}, y {y0}–{y1}")

    def _heatmap(self, target: ImageTarget, regions: list) -> None:
        from ..inference.review_scores import heatmap

        sides = [min(r.region[1] - r.region[0], r.region[3] - r.region[2]) for r in regions]
        cell = max(1, min(sides, default=8) // 8)  # eight cells across the smallest region
        planes = range(target.layout.n_planes) if target.is_stack else [0]
        maps = [heatmap(regions, target.plane_shape, z=z, cell=cell) for z in planes]
        data = np.stack(maps) if target.is_stack else maps[0]
        transform = target.output_transform()
        coarse = cell_transform(transform["scale"], transform["translate"], cell)  # a cell covers cell² pixels
        scale, translate = coarse["scale"], coarse["translate"]
        if HEATMAP in self.viewer.layers:
            self.viewer.layers.remove(HEATMAP)
        top = max((r.score for r in regions), default=0.0) or 1.0  # the most unsure region at full brightness
        self.viewer.add_image(np.nan_to_num(data, nan=0.0), name=HEATMAP, colormap="inferno", opacity=0.6,
                              blending="additive", contrast_limits=(0.0, top), scale=scale, translate=translate,
                              metadata={"autosam": {"image": target.name, "role": "review"}})
        self.viewer.layers.selection.active = self.viewer.layers[target.name]

    # ---------------------------------------------------------------- stepping through

    def go_to_next(self) -> bool:
        """Open the most unsure region not yet accepted (the one after the current one)."""
        if not self.regions:
            notify.info("Nothing to review: press Review first (or every region has been accepted).")
            return False
        index = 0 if self.current not in self.regions else (self.regions.index(self.current) + 1) % len(self.regions)
        return self.go_to(index)

    def go_to(self, index: int) -> bool:
        target = self.target
        if target is None or target.name not in self.viewer.layers:
            notify.info("The reviewed image was closed; press Review again.")
            return False
        self.current = region = self.regions[index]
        self.list.setCurrentRow(index)
        show_region(self.viewer, target, region.region, region.z)
        self._mark(target, region)
        layer = find_output(self.viewer, target.name, "autosam")
        if layer is None:
            return True
        editor = getattr(self.correct_section, "region_editor", None)
        if editor is not None and _on_disk(layer):  # big images: copy the region into paintable layers
            return bool(editor.start())
        self.viewer.layers.selection.active = layer  # open it for editing: the brush on the AutoSAM mask
        layer.mode = "paint"
        return True

    def _mark(self, target: ImageTarget, region) -> None:
        """Outline the region in a Shapes layer (the region being edited)."""
        corners = region_corners(target, region.region, region.z)
        (y0, x0), (y1, x1) = corners
        rectangle = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])
        if target.is_stack:
            rectangle = np.column_stack([np.full(4, region.z), rectangle])
        if REGION_LAYER in self.viewer.layers:
            self.viewer.layers[REGION_LAYER].data = [rectangle]
        else:
            self.viewer.add_shapes([rectangle], shape_type="rectangle", name=REGION_LAYER, edge_color="cyan",
                                   face_color="transparent", edge_width=max(1.0, float(np.ptp(corners[:, 1])) / 100))

    def accepted(self) -> None:
        """A correction was accepted: the region being reviewed leaves the list."""
        if self.current is None or self.current not in self.regions:
            return
        index = self.regions.index(self.current)
        self.regions.pop(index)
        self.list.takeItem(index)
        self.current = self.regions[index - 1] if index > 0 and self.regions else None
        left = len(self.regions)
        self.note.setText(f"Accepted; {left} region(s) left." if left else "Every region has been reviewed.")
