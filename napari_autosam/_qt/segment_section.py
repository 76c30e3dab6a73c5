"""Section 2, Segment: run AutoSAM (and h(g(I))) on an image layer, in the background."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import numpy as np
from napari.layers import Image
from napari.utils.colormaps import DirectLabelColormap
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..class_sets import label_colors
from ..inference.class_labels import model_classes, with_class_labels
from ..inference.tiling import AUTO_TILE, AUTO_TILE_ABOVE, DEFAULT_OVERLAP, auto_tile
from ..io.working import (
    describe,
    region_to_working,
    resolution_note,
)
from . import notify, slide_layers
from .layers import (
    ImageTarget,
    current_plane,
    ensure_output,
    focus_for_editing,
    image_target,
    plane_index,
    visible_region,
)
from .resolution_choice import ResolutionChoice, WorkingTarget
from .session import Session
from .tissue_layer import tissue_for
from .workers import ProgressPanel, TaskRunner

#: The one tiling rule (inference.tiling): planes larger than TILE_ABOVE px go in tiles of TILE.
TILE, TILE_ABOVE, OVERLAP = AUTO_TILE, AUTO_TILE_ABOVE, DEFAULT_OVERLAP

SCOPES = {
    "slice": "Current slice",
    "stack": "Whole stack",
    "image": "Whole image (tiled when large)",
    "region": "Visible region",
}


@dataclass
class Request:
    """What was asked: kept so the image can be segmented again the same way after fine-tuning."""

    layer_name: str
    scope: str
    instances: bool
    resolution: dict | None = None  # working_image keywords ({"level": 1} / {"mpp": 0.5}); None: full resolution
    preview: bool = False  # h(g(I)) only, no SAM encoder


class SegmentSection(ResolutionChoice, QWidget):
    """Pick an image layer and a scope, then segment; outputs go to the "AutoSAM", "h(g(I))" and "instances" layers.

    Signals
    -------
    segmented(str) : the name of the image whose output layers were just rewritten
    """

    segmented = Signal(str)

    def __init__(self, viewer, session: Session, runner: TaskRunner, model_section, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.session = session
        self.runner = runner
        self.model_section = model_section
        self.last: Request | None = None
        self.last_region: tuple[int, int, int, int] | None = None
        #: image layer name → the intensity scaling of its last segmentation (prompts reuse it)
        self.normalizations: dict[str, object] = {}
        #: True while another view owns the layer arrangement (the comparison): results then
        #: update the layers without rearranging them for editing
        self.view_locked = lambda: False

        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The image layer to segment")
        self.image_combo.currentIndexChanged.connect(self._update_scopes)
        self.scope_combo = QComboBox()
        self.scope_combo.setToolTip(
            "Current slice / whole stack for 3D images; for 2D images the whole image (cut into overlapping "
            f"{TILE}-pixel tiles when it is larger than {TILE_ABOVE} pixels) or only the region the canvas shows")
        self._make_resolution_controls()
        self._touched = False
        self._resolution_image: str | None = None
        self.instances_check = QCheckBox("Separate instances")
        self.instances_check.setToolTip("Also split the mask into objects (self-prompted SAM) in an 'instances' layer")
        self.segment_button = QPushButton("Segment")
        self.segment_button.setToolTip("Segment the chosen image with AutoSAM and h(g(I)) in the background (Shift+Alt+R)")
        self.segment_button.clicked.connect(lambda: self.segment())
        self.preview_button = QPushButton("Preview (h only)")
        self.preview_button.setToolTip("A fast look with the surrogate h(g(I)) only: SAM's image encoder does not "
                                       "run, so it takes a fraction of the time (the 'h(g(I))' layer)")
        self.preview_button.clicked.connect(lambda: self.segment(preview=True))
        self.tissue_button = QPushButton("Find tissue")
        self.tissue_button.setToolTip("Slides: find the tissue and show it as an editable 'tissue' layer (paint to "
                                      "add, erase to leave out); Segment then skips the glass and works on the "
                                      "tissue only (found by itself when there is no such layer)")
        self.tissue_button.clicked.connect(lambda: self.find_tissue())
        self.note = QLabel("")
        self.note.setWordWrap(True)
        self.note.setToolTip("About the last segmentation")
        self._lay_out(runner)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed, viewer.layers.events.reordered):
            event.connect(self.refresh_images)
        viewer.layers.events.inserted.connect(self._opened)
        self.refresh_images()

    def _lay_out(self, runner: TaskRunner) -> None:
        """Image, scope and resolution as a form, then instances, the buttons, progress and the note."""
        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Run on", self.scope_combo)
        resolution_row = QHBoxLayout()
        resolution_row.setContentsMargins(0, 0, 0, 0)
        resolution_row.addWidget(self.resolution_combo, 1)
        resolution_row.addWidget(self.mpp_spin)
        form.addRow("Resolution", resolution_row)
        form.addRow(self.resolution_note)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.instances_check)
        buttons = QHBoxLayout()
        buttons.addWidget(self.segment_button)
        buttons.addWidget(self.preview_button)
        buttons.addWidget(self.tissue_button)
        layout.addLayout(buttons)
        layout.addWidget(ProgressPanel(runner))
        layout.addWidget(self.note)

    def _opened(self, event) -> None:
        """A big image just opened: show the labels an earlier session stored for it (after the event settles)."""
        layer = getattr(event, "value", None)
        if isinstance(layer, Image):
            QTimer.singleShot(0, lambda: self.show_stored(layer.name))

    def show_stored(self, name: str) -> bool:
        """Show the on-disk labels stored for the big image ``name``, if any; True when shown."""
        if name not in self.viewer.layers:
            return False
        try:
            target = image_target(self.viewer.layers[name])
        except ValueError:
            return False
        if not slide_layers.on_disk(target):
            return False
        try:
            return slide_layers.show_stored(self, target)
        except (OSError, ValueError) as exc:
            notify.error(f"Showing the stored labels of {name}", exc)
            return False

    # ---------------------------------------------------------------- choices

    def refresh_images(self, event=None) -> None:
        current = self.image_combo.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        elif names:
            selected = self.viewer.layers.selection.active
            self.image_combo.setCurrentText(selected.name if isinstance(selected, Image) else names[-1])
        self.image_combo.blockSignals(False)
        self._update_scopes()

    def _update_scopes(self, index: int | None = None) -> None:
        target = self.target(quiet=True)
        keys = ["slice", "stack"] if target is not None and target.is_stack else ["image", "region"]
        previous = self.scope_combo.currentData()
        self.scope_combo.clear()
        for key in keys:
            self.scope_combo.addItem(SCOPES[key], key)
        if previous in keys:
            self.scope_combo.setCurrentIndex(keys.index(previous))
        self._update_resolutions()

    def select(self, layer_name: str, scope: str | None = None, *, instances: bool | None = None) -> None:
        """Choose image, scope and mode programmatically (tests, the demo)."""
        self.image_combo.setCurrentText(layer_name)
        if scope is not None:
            self.scope_combo.setCurrentIndex(self.scope_combo.findData(scope))
        if instances is not None:
            self.instances_check.setChecked(instances)

    def target(self, *, quiet: bool = False) -> ImageTarget | None:
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            if not quiet:
                notify.info("Open an image first (File ▸ Open, or File ▸ Open Sample ▸ AutoSAM).")
            return None
        try:
            return image_target(self.viewer.layers[name])
        except ValueError as exc:
            if not quiet:
                notify.error(f"Segmenting {name}", exc)
            return None

    # ---------------------------------------------------------------- run

    def segment(self, request: Request | None = None, *, preview: bool = False) -> bool:
        """Segment as the controls say (or as ``request`` says); loads SAM first if needed.

        ``preview``: h(g(I)) only (see ``Segmenter.segment``); only the "h(g(I))" layer is updated.
        """
        if request is None and self.session.segmenter is not None and not self._touched:
            self.select_model_resolution()  # a model loaded since: its resolution is the default
        request = request or Request(self.image_combo.currentText(), self.scope_combo.currentData(),
                                     self.instances_check.isChecked(), self.resolution_request(), preview)
        if request.layer_name not in self.viewer.layers:
            notify.info("Open an image first (File ▸ Open, or File ▸ Open Sample ▸ AutoSAM).")
            return False
        if self.session.segmenter is None:
            return self.model_section.load(then=lambda: self.segment(request))
        try:
            target = image_target(self.viewer.layers[request.layer_name])
            full = target
            target = self._at_resolution(target, request.resolution)
        except ValueError as exc:  # ResolutionError too
            notify.error(f"Segmenting {request.layer_name}", exc)
            return False
        scope = request.scope if request.scope in (("slice", "stack") if target.is_stack else ("image", "region")) \
            else ("slice" if target.is_stack else "image")
        z = current_plane(self.viewer, target)
        try:
            region = visible_region(self.viewer, full) if scope == "region" else None
            if region is not None and isinstance(target, WorkingTarget):
                region = region_to_working(region, target.resolution, target.plane_shape)
        except ValueError as exc:
            notify.error(f"Segmenting the visible region of {target.name}", exc)
            return False
        self.last_region = region
        mode = "instances" if request.instances else "semantic"
        preview = request.preview
        segmenter = self.session.segmenter
        model_label = self.session.model_label
        big = slide_layers.on_disk(target)  # results go to OME-Zarr labels on disk, shown lazily

        def make_task(token):
            return self._task(segmenter, target, scope, z, region, mode, preview, big, token)

        def done(result) -> None:
            self.last = Request(request.layer_name, scope, request.instances, request.resolution, preview)
            if big:
                return slide_layers.show_result(self, target, result, model_label, request.resolution)
            self._show(target, result, scope, z, region, model_label)

        what = {"slice": f"slice {z}", "stack": "the whole stack", "image": "the whole image",
                "region": "the visible region"}[scope]
        if isinstance(target, WorkingTarget):
            what += f" at {describe(target.resolution)}"
        verb = "Previewing (h only)" if preview else "Segmenting"
        if big and not self.runner.running and slide_layers.two_speed_slide(self.session, target, region, mode,
                                                                            preview) is not None:
            what += " (tissue only: h(g(I)) on every tissue tile, then SAM where h is least sure)"
            slide_layers.watch_filling(self, target)
        return self.runner.start(f"{verb} {what} of {target.name}", make_task, done)

    def find_tissue(self, name: str | None = None) -> bool:
        """Find the tissue of the slide ``name`` (default: the chosen image) off the GUI thread; show the layer."""
        from .tissue_layer import find_tissue

        return find_tissue(self, name or self.image_combo.currentText())

    def _task(self, segmenter, target: ImageTarget, scope: str, z: int, region, mode: str, preview: bool, big: bool,
              token):
        """The segmentation task of one run: on-disk labels for big images, else the slice, region or image."""
        if big:
            return slide_layers.segment_task(self.session, target, region, mode, token, overlap=OVERLAP,
                                             preview=preview, tissue=tissue_for(self.viewer, target))
        data = target.data
        plane_axis = target.layout.plane_channel_axis
        if scope == "slice":
            data = target.layout.read(data, z)
            task = segmenter.segment(data, channel_axis=plane_axis, mode=mode, cancel=token, preview=preview)
            return with_class_labels(segmenter, task, data, channel_axis=plane_axis, preview=preview, cancel=token)
        if scope == "region":
            task = segmenter.segment_region(data, region, layout=target.layout, mode=mode, cancel=token,
                                            preview=preview)
            return with_class_labels(segmenter, task, target.layout.read(data, 0, region), channel_axis=plane_axis,
                                     preview=preview, cancel=token)
        tile = auto_tile(target.plane_shape)
        task = segmenter.segment(data, layout=target.layout, mode=mode, tile=tile, overlap=OVERLAP, cancel=token,
                                 preview=preview)
        return with_class_labels(segmenter, task, data, channel_axis=target.layout.channel_axis, tile=tile,
                                 overlap=OVERLAP, stack=target.is_stack, preview=preview, cancel=token)

    def rerun(self) -> bool:
        """Segment the last image again the same way (after fine-tuning or a rollback)."""
        if self.last is None or self.last.layer_name not in self.viewer.layers:
            return False
        return self.segment(self.last)

    # ---------------------------------------------------------------- results

    def _show(self, target: ImageTarget, result, scope: str, z: int, region, model_label: str) -> None:
        """Write the result into the output layers: the slice, the region, or all of it."""
        if target.name not in self.viewer.layers:
            return  # the image was closed meanwhile
        self.normalizations[target.name] = result.normalization
        outputs = [("autosam", result.autosam_mask), ("h", result.h_mask), ("instances", result.instances)]
        foreground = 0.0
        classes = model_classes(self.session.segmenter) if self.session.segmenter is not None else None
        for role, values in outputs:
            if values is None:
                continue
            values = np.asarray(values)  # tiled results are zarr arrays in result.store: read them now
            if role == ("h" if result.preview else "autosam"):
                foreground = float(np.mean(values > 0))
            layer = ensure_output(self.viewer, target, role)
            if classes is not None and role in ("autosam", "h"):  # class ids: shown in the classes' colours
                layer.colormap = DirectLabelColormap(color_dict=label_colors(classes))
            index = plane_index(target, z) if scope == "slice" else ()
            if region is not None:
                y0, y1, x0, x1 = region
                index = (*index, slice(y0, y1), slice(x0, x1))
            layer.data[index] = values.astype(layer.data.dtype, copy=False)
            info = layer.metadata["autosam"]
            info["model"] = model_label
            info["downsample"] = float(getattr(getattr(target, "resolution", None), "downsample", 1.0))  # to level 0
            if role == "autosam":
                agreement = dict(info.get("agreement", {}))
                planes = [z] if scope == "slice" else list(range(target.layout.n_planes)) if target.is_stack else [0]
                agreement.update({p: a for p, a in zip(planes, result.agreement)})
                info["agreement"] = agreement
            layer.refresh()
        if result.store is not None:
            shutil.rmtree(result.store, ignore_errors=True)  # tiled results were copied into the layers
        self._select_for_editing(target)
        notes = list(result.messages)
        if isinstance(target, WorkingTarget):
            differs = resolution_note(target.resolution, self.model_resolution())
            notes.append(f"Segmented at {describe(target.resolution)}." if not differs
                         else differs[0].upper() + differs[1:] + ".")
        if result.untrained:
            notes.append("The prompt generator is untrained, so this mask is only a starting point: "
                         "correct it, accept, and fine-tune.")
        if result.cancelled:
            notes.append("Cancelled: the slices or tiles not reached are empty.")
        if result.preview:
            notes.append("Preview: h(g(I)) only, without SAM; Segment for the AutoSAM mask.")
        self.note.setText(f"{model_label}: {foreground:.0%} of the pixels are foreground."
                          + (" " + " ".join(notes) if notes else ""))
        self.segmented.emit(target.name)

    def _select_for_editing(self, target: ImageTarget) -> None:
        """The image's AutoSAM layer on top, shown and selected (unless the comparison owns the view)."""
        if not self.view_locked():
            focus_for_editing(self.viewer, target.name)
