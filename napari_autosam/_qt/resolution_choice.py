"""The Segment section's working-resolution choice for slides: the pyramid level or a µm/px, defaulting to the
model's own, and the slide seen at that resolution (:class:`WorkingTarget`).

The rules (which level matches a model, what a request reads) are
:mod:`napari_autosam.io.working`'s; this only wires the controls to them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QLabel

from ..inference.inputs import image_layout
from ..io.slides import slide_from_layer
from ..io.working import (
    ResolutionError,
    layer_transform,
    level_choices,
    preferred_request,
    resolution_note,
    working_image,
)
from .layers import ImageTarget

__all__ = ["ResolutionChoice", "WorkingTarget"]


@dataclass
class WorkingTarget(ImageTarget):
    """A slide layer seen at a working resolution: outputs are at that resolution, placed over the slide."""

    resolution: object = None

    def output_transform(self) -> dict:
        units = super().output_transform().get("units")
        return {**layer_transform(self.resolution, self.layer.scale[-2:], self.layer.translate[-2:]),
                **({"units": units[-2:]} if units else {})}


class ResolutionChoice:
    """The resolution controls of :class:`~napari_autosam._qt.segment_section.SegmentSection` (a mixin: it uses
    the section's viewer, session and image choice)."""

    def _make_resolution_controls(self) -> None:
        """The pyramid level / µm per pixel choice of slides and the note on the model's own resolution."""
        self.resolution_combo = QComboBox()
        self.resolution_combo.setToolTip(
            "Slides: the pyramid level (µm per pixel) to segment at, or a µm/px of your own. "
            "Defaults to the resolution the model was trained at.")
        self.resolution_combo.currentIndexChanged.connect(self._resolution_changed)
        self.resolution_combo.activated.connect(self._resolution_touched)
        self.mpp_spin = QDoubleSpinBox()
        self.mpp_spin.setRange(0.01, 1000.0)
        self.mpp_spin.setDecimals(3)
        self.mpp_spin.setSingleStep(0.05)
        self.mpp_spin.setSuffix(" µm/px")
        self.mpp_spin.setToolTip("Segment at this many µm per pixel (read from the nearest finer level, resampled)")
        self.mpp_spin.valueChanged.connect(self._resolution_changed)
        self.resolution_note = QLabel("")
        self.resolution_note.setWordWrap(True)
        self.resolution_note.setToolTip("The model's own resolution, when the one chosen differs")

    def slide(self):
        """The chosen image layer as a slide (levels, µm/px), or None for ordinary images."""
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            return None
        layer = self.viewer.layers[name]
        levels = layer.data if layer.multiscale else [layer.data]
        return slide_from_layer(levels, layer.metadata)

    def model_resolution(self) -> dict | None:
        """The resolution the loaded model was trained at (its metadata), if it recorded one."""
        segmenter = self.session.segmenter
        return segmenter.checkpoint.metadata.get("resolution") if segmenter is not None else None

    def _update_resolutions(self) -> None:
        slide = self.slide()
        # Layers come and go (the results themselves): a choice the user made for this image stays.
        name = self.image_combo.currentText()
        kept = self.resolution_request() if self._touched and name == self._resolution_image else None
        self._resolution_image = name
        self.resolution_combo.blockSignals(True)
        self.resolution_combo.clear()
        if slide is None:
            self.resolution_combo.addItem("Full resolution", None)
        else:
            for label, request in level_choices(slide):
                self.resolution_combo.addItem(label, request)
            if slide.mpp is not None:
                self.resolution_combo.addItem("Custom µm/px", "custom")
                self.mpp_spin.setMinimum(round(float(np.mean(slide.mpp)), 3))
        self.resolution_combo.setEnabled(slide is not None)
        self.resolution_combo.blockSignals(False)
        if kept is not None:
            self.set_resolution(kept)
            return
        self._touched = False
        self.select_model_resolution()

    def select_model_resolution(self) -> None:
        """Preselect the model's resolution on a slide (until the user chooses another one)."""
        slide, recorded = self.slide(), self.model_resolution()
        request = preferred_request(slide, recorded) if slide is not None else {}
        if request:
            self.set_resolution(request)
        self._touched = False
        self._resolution_changed()

    def set_resolution(self, request: dict | None) -> None:
        """Choose ``{"level": i}`` or ``{"mpp": x}`` programmatically (tests, the model's default)."""
        if request and "mpp" in request:
            index = self.resolution_combo.findData("custom")
            if index >= 0:
                self.resolution_combo.setCurrentIndex(index)
                self.mpp_spin.setValue(float(request["mpp"]))
        else:
            index = self.resolution_combo.findData(request)
            self.resolution_combo.setCurrentIndex(max(index, 0))
        self._resolution_changed()

    def resolution_request(self) -> dict | None:
        """The working_image keywords the control says (None: the image as it is)."""
        data = self.resolution_combo.currentData()
        if data == "custom":
            return {"mpp": round(self.mpp_spin.value(), 3)}
        return dict(data) if data else None

    def _resolution_touched(self, index: int = 0) -> None:
        self._touched = True

    def _resolution_changed(self, *args) -> None:
        self.mpp_spin.setVisible(self.resolution_combo.currentData() == "custom")
        slide, request = self.slide(), self.resolution_request()
        note = None
        if slide is not None and request is not None:
            try:
                note = resolution_note(working_image(slide, **request)[1], self.model_resolution())
            except ResolutionError as exc:
                note = str(exc)
        self.resolution_note.setText(note[0].upper() + note[1:] + "." if note else "")
        self.resolution_note.setVisible(bool(note))

    def _at_resolution(self, target: ImageTarget, request: dict | None) -> ImageTarget:
        """The target at the chosen working resolution (slides only; other images stay as they are)."""
        slide = slide_from_layer(target.layer.data if target.layer.multiscale else [target.layer.data],
                                 target.layer.metadata)
        if slide is None or request is None:
            return target
        array, resolution = working_image(slide, **request)
        layout = image_layout(array, target.layout.channel_axis)
        return WorkingTarget(target.layer, array, layout, resolution)
