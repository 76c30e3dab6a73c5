"""Section 4, Correct: fix the AutoSAM mask (napari's tools or SAM prompts) and accept it.

SAM prompts: positive and negative points in a "SAM points" layer and a box
in a "SAM box" layer.  Every change of the prompts asks SAM for the mask of
the object being drawn, using the image's cached embedding, so an answer
comes back in a few tens of milliseconds; the object is painted into the
AutoSAM layer as one napari edit (Ctrl+Z undoes it).  "New object" starts
the next one.  On images larger than a tile, prompts work in the tile that
holds the first prompt (the same tiles segmentation cached); choosing that
window, reading and normalising it and converting coordinates is
:mod:`napari_autosam.inference.interactive`'s work, this section only wires.

While correcting, the AutoSAM layer is on top of the other masks, visible and
selected (h(g(I)) dimmed), and the section says which layer is being edited.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from napari.layers import Points, Shapes
from qtpy.QtWidgets import QCheckBox, QGridLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from . import avoid_triton_llvm_clash

avoid_triton_llvm_clash()  # before torch's chain of imports (see napari_autosam._qt)

from ..inference.interactive import PromptWindow, prompt_in_window, prompt_window  # noqa: E402
from ..inference.tiling import auto_tile  # noqa: E402
from ..progress import single_step  # noqa: E402
from . import notify  # noqa: E402
from .layers import (  # noqa: E402
    ImageTarget,
    current_plane,
    find_output,
    focus_for_editing,
    plane_index,
    role_of,
    visible_region,
)
from .segment_section import OVERLAP  # noqa: E402
from .workers import ProgressPanel, TaskRunner  # noqa: E402

POSITIVE, NEGATIVE = "#33ff66", "#ff3355"
#: Big images' labels live on disk as multiscale layers, which napari cannot paint (see region.py).
ON_DISK_NOTE = "These labels are on disk and cannot be painted: zoom in and press Edit region first."
#: Planes up to this many pixels are accepted whole; larger ones: the visible region.
ACCEPT_WHOLE_BELOW = 4096 * 4096


@dataclass
class ObjectEdit:
    """The object SAM is drawing: where, with which label, and the labels it replaces."""

    image: str
    window: PromptWindow  # plane, pixels and the RGB SAM sees
    label: int
    before: np.ndarray  # the AutoSAM labels in the window before this object

    @property
    def z(self) -> int:
        return self.window.z


class CorrectSection(QWidget):
    def __init__(self, viewer, session, segment_section, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.session = session
        self.segment_section = segment_section
        self.edit: ObjectEdit | None = None
        self._pending = False
        #: called before prompts or painting start (the widget leaves the comparison here)
        self.before_editing = lambda: None
        self._hooked: set = set()  # AutoSAM layers whose paint-tool choice brings them to the top
        self._focusing = False
        #: Prompts run here, one at a time; changes made meanwhile are answered right after.
        self.prompt_runner = TaskRunner(self)

        help_text = QLabel(
            "Fix the <b>AutoSAM</b> layer with napari's brush (P), fill (F) and eraser (E), or let SAM draw an "
            "object: add positive / negative points or a box on it.")
        help_text.setWordWrap(True)
        self.positive_button = self._button("+ Point", "Click on the object to add it (positive SAM prompt; Shift+Alt+P)")
        self.negative_button = self._button("− Point", "Click where the object is not (negative SAM prompt; Shift+Alt+N)")
        self.box_button = self._button("Box", "Drag a box around the object (SAM box prompt; Shift+Alt+B)")
        self.positive_button.clicked.connect(lambda: self.start_points(True))
        self.negative_button.clicked.connect(lambda: self.start_points(False))
        self.box_button.clicked.connect(self.start_box)
        self.new_button = QPushButton("New object")
        self.new_button.setToolTip("Keep the object drawn so far and start the next one (Shift+Alt+O)")
        self.new_button.clicked.connect(self.new_object)
        self.refine_check = QCheckBox("Prompt with g(I) too")
        self.refine_check.setToolTip("Give SAM the prompt generator's dense prompt with your clicks, so they refine "
                                     "the automatic mask instead of starting from nothing")
        self.accept_button = QPushButton("Accept correction")
        self.accept_button.setToolTip("Store the AutoSAM mask of the shown slice (or image) with its image in the "
                                      "annotation folder, for fine-tuning (Shift+Alt+A)")
        self.accept_button.clicked.connect(lambda: self.accept())
        self.editing = QLabel("Segment an image; its AutoSAM layer is then the one you edit.")
        self.editing.setWordWrap(True)
        self.editing.setToolTip("The layer that napari's paint tools and the SAM prompts change")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setToolTip("The annotation folder (set in the Model section)")
        grid = QGridLayout()
        grid.addWidget(self.positive_button, 0, 0)
        grid.addWidget(self.negative_button, 0, 1)
        grid.addWidget(self.box_button, 0, 2)
        grid.addWidget(self.new_button, 1, 0)
        grid.addWidget(self.refine_check, 1, 1, 1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(help_text)
        layout.addWidget(self.editing)
        layout.addLayout(grid)
        layout.addWidget(ProgressPanel(self.prompt_runner))
        layout.addWidget(self.accept_button)
        layout.addWidget(self.status)
        session.annotations_changed.connect(self.refresh_status)
        viewer.layers.selection.events.active.connect(self._selection_changed)
        self.refresh_status()

    @staticmethod
    def _button(text: str, tip: str) -> QPushButton:
        button = QPushButton(text)
        button.setToolTip(tip)
        return button

    def _selection_changed(self, event=None) -> None:
        layer = self.viewer.layers.selection.active
        owner, role = role_of(layer) if layer is not None else (None, None)
        if role == "autosam" and layer.unique_id not in self._hooked:
            self._hooked.add(layer.unique_id)  # picking a paint tool on it brings it to the top
            layer.events.mode.connect(lambda event, name=owner: self._mode_changed(name, event))
        if role == "autosam":
            self.editing.setText(f"Editing: <b>{layer.name}</b> (of {owner}); it is drawn above the other masks.")
        elif role in ("points", "box"):
            autosam = find_output(self.viewer, owner, "autosam")
            name = autosam.name if autosam is not None else "AutoSAM"
            self.editing.setText(f"Adding SAM prompts: they edit <b>{name}</b> (of {owner}).")
        elif find_output(self.viewer, self.segment_section.image_combo.currentText(), "autosam") is not None:
            self.editing.setText("Select the <b>AutoSAM</b> layer to correct it with napari's tools.")

    def _mode_changed(self, image_name: str, event) -> None:
        mode = str(getattr(event, "value", "") or getattr(event.source, "mode", ""))
        if self._focusing or mode not in ("paint", "fill", "erase", "polygon") or self.segment_section.view_locked():
            return
        self._focusing = True
        try:
            layer = focus_for_editing(self.viewer, image_name)
            if layer is not None and str(layer.mode) != mode:
                layer.mode = mode  # moving the layer to the top made napari drop the tool: pick it again
        finally:
            self._focusing = False

    def start_editing(self) -> None:
        """Leave the comparison and bring the current image's AutoSAM layer to the top, selected."""
        self.before_editing()
        target = self.segment_section.target(quiet=True)
        if target is not None:
            focus_for_editing(self.viewer, target.name)

    def refresh_status(self) -> None:
        store = self.session.annotations
        try:
            count = len(store)
        except ValueError as exc:
            count = 0
            notify.error("Reading the annotation folder", exc)
        self.status.setText(f"{count} accepted correction{'s' if count != 1 else ''} in {store.root}")

    # ---------------------------------------------------------------- prompt layers

    def _target(self) -> ImageTarget | None:
        target = self.segment_section.target()
        layer = find_output(self.viewer, target.name, "autosam") if target is not None else None
        if target is not None and layer is None:
            notify.info("Segment the image first; prompts then edit its AutoSAM layer.")
            return None
        if layer is not None and layer.multiscale:
            notify.info(ON_DISK_NOTE)
            return None
        if target is not None:
            self.start_editing()
        return target

    def _prompt_layer(self, target: ImageTarget, role: str):
        for layer in self.viewer.layers:
            if role_of(layer) == (target.name, role):
                return layer
        meta = {"autosam": {"image": target.name, "role": role}}
        ndim = len(target.layout.output_shape)
        if role == "points":
            layer = Points(np.empty((0, ndim)), ndim=ndim, name="SAM points", size=8, border_width=0.15,
                           features={"positive": np.zeros(0, bool)}, metadata=meta, **target.output_transform())
        else:
            layer = Shapes(ndim=ndim, name="SAM box", edge_color=POSITIVE, face_color="transparent", edge_width=2,
                           metadata=meta, **target.output_transform())
        self.viewer.layers.append(layer)
        layer.events.data.connect(self._prompts_changed)
        return layer

    def start_points(self, positive: bool) -> None:
        target = self._target()
        if target is None:
            return
        layer = self._prompt_layer(target, "points")
        layer.feature_defaults["positive"] = positive
        layer.current_face_color = POSITIVE if positive else NEGATIVE
        self.viewer.layers.selection.active = layer
        layer.mode = "add"

    def start_box(self) -> None:
        target = self._target()
        if target is None:
            return
        layer = self._prompt_layer(target, "box")
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"

    def new_object(self) -> None:
        """Keep what was drawn; the next prompts make a new object."""
        self.edit = None
        for layer in list(self.viewer.layers):
            if role_of(layer)[1] in ("points", "box"):
                with layer.events.data.blocker(self._prompts_changed):
                    layer.data = np.empty((0, layer.ndim)) if isinstance(layer, Points) else []

    # ---------------------------------------------------------------- prompting

    def _prompts(self, target: ImageTarget, z: int):
        """Points ``(y, x)``, their labels (1/0) and the last box ``(y0, x0, y1, x1)`` on plane ``z``."""
        points, labels, box = np.empty((0, 2)), np.empty(0), None
        for layer in self.viewer.layers:
            owner, role = role_of(layer)
            if owner != target.name:
                continue
            if role == "points" and len(layer.data):
                data = np.asarray(layer.data)
                keep = np.round(data[:, 0]) == z if target.is_stack else np.ones(len(data), bool)
                points = data[keep][:, -2:]
                labels = np.asarray(layer.features["positive"], dtype=float)[keep]
            elif role == "box":
                shapes = [np.asarray(s) for s in layer.data if not target.is_stack or np.round(s[0, 0]) == z]
                if shapes:
                    corners = shapes[-1][:, -2:]
                    box = (*corners.min(axis=0), *corners.max(axis=0))
        return points, labels, box

    def _prompts_changed(self, event=None) -> None:
        if event is not None and getattr(event, "action", "added") not in ("added", "removed", "changed"):
            return  # napari announces each edit twice ("adding", then "added")
        if self.session.segmenter is None:
            return
        if self.prompt_runner.running:
            self._pending = True  # answered when the prompt in flight returns
            return
        target = self.segment_section.target(quiet=True)
        if target is None:
            return
        try:
            self.apply_prompts(target)
        except Exception as exc:  # a prompt must never take the GUI down
            notify.error("SAM prompt", exc)

    def apply_prompts(self, target: ImageTarget) -> None:
        """Ask SAM for the object the prompts describe and paint it into the AutoSAM layer."""
        z = current_plane(self.viewer, target)
        points, labels, box = self._prompts(target, z)
        labels_layer = find_output(self.viewer, target.name, "autosam")
        if labels_layer is None:
            return
        if not len(points) and box is None:
            self._paint(labels_layer, target, None)  # all prompts removed: undo the object
            return
        if self.edit is None or (self.edit.image, self.edit.z) != (target.name, z):
            anchor = points[0] if len(points) else ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
            window = prompt_window(target.data, target.layout, z, anchor, tile=auto_tile(target.plane_shape),
                                   overlap=OVERLAP, normalization=self.segment_section.normalizations.get(target.name))
            index = plane_index(target, z) + window.slices
            label = int(np.asarray(labels_layer.data).max()) + 1
            self.edit = ObjectEdit(target.name, window, label, np.array(labels_layer.data[index]))
        edit = self.edit
        dense = "autosam" if self.refine_check.isChecked() else "sam"
        segmenter = self.session.segmenter
        first = edit.window.rgb not in self.session.cache

        def done(mask) -> None:
            if self.edit is edit and edit.image in self.viewer.layers:
                self._paint(labels_layer, target, mask)
            if self._pending:
                self._pending = False
                self._prompts_changed()

        def ask():
            return prompt_in_window(segmenter, edit.window, points_yx=points if len(points) else None,
                                    labels=labels, box_yxyx=box, dense=dense)

        # Off the GUI thread: a prompt is SAM's decoder only (the embedding is cached), but on a
        # slow CPU that is still a few hundred ms, and the first prompt on an image encodes it.
        message = "Computing the SAM embedding, then the mask" if first else "Asking SAM for the mask"
        self.prompt_runner.start("SAM prompt", lambda token: single_step("prompt", message, ask), done)

    def _paint(self, layer, target: ImageTarget, mask: np.ndarray | None) -> None:
        """Set the window to ``before`` with the object (``mask``) on top, as one undoable napari edit."""
        edit = self.edit
        if edit is None:
            return
        new = edit.before.copy() if mask is None else np.where(mask, edit.label, edit.before).astype(edit.before.dtype)
        y0, y1, x0, x1 = edit.window.window
        index = plane_index(target, edit.z) + edit.window.slices
        current = np.asarray(layer.data[index])
        changed = np.nonzero(current != new)
        if not changed[0].size:
            return
        coords = [changed[0] + y0, changed[1] + x0]
        if target.is_stack:
            coords.insert(0, np.full_like(changed[0], edit.z))
        layer.data_setitem(tuple(coords), new[changed])
        if mask is None:
            self.edit = None

    # ---------------------------------------------------------------- accept

    def accept(self):
        """Store the AutoSAM mask of the shown plane (whole, or the visible region of a huge one) with its image."""
        target = self.segment_section.target()
        if target is None:
            return None
        editor = getattr(self, "region_editor", None)  # set by region.RegionEditor
        if editor is not None and editor.owns(target):
            return editor.accept()
        layer = find_output(self.viewer, target.name, "autosam")
        if layer is None:
            notify.info("Nothing to accept yet: segment the image, correct the AutoSAM layer, then accept.")
            return None
        if layer.multiscale:
            notify.info(ON_DISK_NOTE)
            return None
        z = current_plane(self.viewer, target)
        height, width = target.plane_shape
        region = None if height * width <= ACCEPT_WHOLE_BELOW else visible_region(self.viewer, target)
        y0, y1, x0, x1 = region or (0, height, 0, width)
        image = target.layout.read(target.data, z, (y0, y1, x0, x1))
        index = plane_index(target, z) + (slice(y0, y1), slice(x0, x1))
        mask = np.asarray(layer.data[index])
        try:
            entry = self.session.annotations.accept(
                image, mask, source=target.source, layer_name=target.name,
                slice_index=(z,) if target.is_stack else None, region=region,
                model=self.session.model_label, sam=self.session.sam_name)
        except (OSError, ValueError) as exc:
            notify.error("Accepting the correction", exc)
            return None
        self.new_object()
        self.session.annotations_changed.emit()
        where = f"slice {z} of {target.name}" if target.is_stack else target.name
        revision = f" (revision {entry.revision}; the earlier one is kept)" if entry.revision > 1 else ""
        notify.info(f"Accepted the correction of {where}{revision}.")
        return entry
