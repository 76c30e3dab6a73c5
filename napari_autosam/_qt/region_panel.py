"""Edit region: correct part of a big image whose labels are on disk, then accept it.

napari cannot paint multiscale labels.  "Edit region" copies the labels of
the region the canvas shows (at the working resolution, at most
:data:`~napari_autosam.slide_regions.MAX_EDIT_SIDE` pixels a side) into
ordinary Labels layers on top of the slide, beside a hidden copy of the
region's pixels that becomes the image the widget works on: napari's brush,
fill and eraser, the SAM point / box prompts, Segment and Compare all work
there as on a small image.  "Accept region" writes the AutoSAM labels back
into the on-disk labels (only that region and its pyramid footprint) and
stores the region as a correction with its slide, resolution and position;
"Discard" drops the edit.  The engine side is :mod:`napari_autosam.slide_regions`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from . import notify
from .layers import META_KEY, find_output, image_target, role_of, visible_region
from .slide_layers import is_on_disk, resolution_of

REGION_KEY = "autosam_region"


@dataclass
class RegionEdit:
    """The region being edited: which slide, where, and what was hidden meanwhile."""

    slide: str  # the slide's layer name
    source: str  # the slide's path (or layer description)
    box: tuple[int, int, int, int]  # (y0, y1, x0, x1), working-resolution pixels
    resolution: object
    paths: dict[str, Path]  # role → on-disk labels
    image_name: str  # the layer holding the region's pixels
    hidden: list  # on-disk layers hidden while editing
    request: dict | None = None  # the Resolution control's choice the labels were made with


class RegionEditor(QWidget):
    """The "Edit region" / "Accept region" / "Discard" buttons (shown in the Correct section)."""

    def __init__(self, viewer, session, segment_section, correct_section, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer, self.session = viewer, session
        self.segment_section, self.correct_section = segment_section, correct_section
        correct_section.region_editor = self  # its Accept button accepts a region being edited through us
        self.edit: RegionEdit | None = None
        self.edit_button = QPushButton("Edit region")
        self.edit_button.setToolTip("Big images: copy the labels of the region the canvas shows into a layer "
                                    "you can paint and prompt (zoom in first; at most 4096² pixels)")
        self.edit_button.clicked.connect(lambda: self.start())
        self.accept_button = QPushButton("Accept region")
        self.accept_button.setToolTip("Write the edited region back into the labels on disk and store it as a "
                                      "correction for fine-tuning")
        self.accept_button.clicked.connect(lambda: self.accept())
        self.discard_button = QPushButton("Discard")
        self.discard_button.setToolTip("Drop the edit; the labels on disk stay as they were")
        self.discard_button.clicked.connect(lambda: self.finish())
        self.status = QLabel("")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        for button in (self.edit_button, self.accept_button, self.discard_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        self._update()

    def _update(self) -> None:
        self.accept_button.setEnabled(self.edit is not None)
        self.discard_button.setEnabled(self.edit is not None)
        if self.edit is None:
            self.status.setText("")
        else:
            y0, y1, x0, x1 = self.edit.box
            self.status.setText(f"Editing rows {y0}–{y1}, columns {x0}–{x1} of {self.edit.slide}.")

    def owns(self, target) -> bool:
        """Whether ``target`` is the region being edited."""
        return self.edit is not None and target is not None and target.name == self.edit.image_name

    # ---------------------------------------------------------------- start

    def start(self) -> bool:
        """Copy the visible region's labels into editable layers; False (with one line) when it cannot."""
        from ..slide_regions import edit_box

        if self.edit is not None:
            notify.info("Accept or discard the region being edited first.")
            return False
        from ..io.working import region_to_working

        full = self.segment_section.target()
        if full is None:
            return False
        autosam = find_output(self.viewer, full.name, "autosam")
        if autosam is None or not is_on_disk(autosam):
            notify.info("Edit region is for big images whose labels are on disk: segment the image first "
                        "(a smaller image's AutoSAM layer can be painted directly).")
            return False
        try:
            # the image at the resolution its labels were made at (segment_section's one way to get it)
            request = autosam.metadata[META_KEY].get("resolution_request")
            target = self.segment_section._at_resolution(full, request)
            box = visible_region(self.viewer, full)
            if getattr(target, "resolution", None) is not None:
                box = region_to_working(box, target.resolution)
            box = edit_box(box, target.plane_shape)
        except ValueError as exc:  # ResolutionError too
            notify.info(f"Edit region: {exc}")
            return False
        paths = {role: Path(layer.metadata[META_KEY]["path"]) for role in ("autosam", "h")
                 if (layer := find_output(self.viewer, target.name, role)) is not None and is_on_disk(layer)}
        self.edit = self._copy(target, box, paths)
        self.edit.request = request
        self._update()
        return True

    def _copy(self, target, box, paths) -> RegionEdit:
        from ..io.labels_zarr import LabelImage
        from ..io.working import box_transform

        placement = LabelImage.open(paths["autosam"]).placement
        where = box_transform(box, placement.scale, placement.translation)  # the region lands where it was
        slide = target.layer
        style = {} if slide.rgb else {"colormap": slide.colormap, "contrast_limits": slide.contrast_limits}
        image = self.viewer.add_image(
            target.layout.read(target.data, 0, box), name=f"{target.name} · region", rgb=slide.rgb, visible=False,
            scale=where["scale"], translate=where["translate"], **style,
            metadata={"source": target.source, REGION_KEY: {"slide": target.name, "box": list(box)}})
        region = image_target(image)
        from .layers import ensure_output

        hidden = []
        for role, path in paths.items():
            disk = find_output(self.viewer, target.name, role)
            layer = ensure_output(self.viewer, region, role)
            layer.data = LabelImage.open(path).read_region(box).astype(layer.data.dtype, copy=False)
            layer.visible = disk.visible
            if disk.visible:
                disk.visible = False
                hidden.append(disk)
        self.segment_section.select(image.name, "image")
        self.segment_section.normalizations[image.name] = self.segment_section.normalizations.get(target.name)
        self.viewer.layers.selection.active = find_output(self.viewer, image.name, "autosam")
        return RegionEdit(target.name, target.source, box, resolution_of(target), paths, image.name, hidden)

    # ---------------------------------------------------------------- accept / discard

    def accept(self):
        """Write the edited AutoSAM labels back to disk and store the region as a correction."""
        from ..slide_regions import accept_region

        edit = self.edit
        if edit is None:
            notify.info("Nothing to accept: press Edit region first.")
            return None
        layer = find_output(self.viewer, edit.image_name, "autosam")
        if layer is None or edit.image_name not in self.viewer.layers:
            notify.info("The region's layers were closed; press Edit region again.")
            self.finish()
            return None
        try:
            entry = accept_region(self.session.annotations, edit.paths["autosam"], edit.box,
                                  np.asarray(self.viewer.layers[edit.image_name].data), np.asarray(layer.data),
                                  source=edit.source, resolution=edit.resolution, layer_name=edit.slide,
                                  model=self.session.model_label, sam=self.session.sam_name)
        except (OSError, ValueError) as exc:
            notify.error("Accepting the region", exc)
            return None
        self.finish()
        self.session.annotations_changed.emit()
        revision = f" (revision {entry.revision})" if entry.revision > 1 else ""
        notify.info(f"Accepted the region of {edit.slide}{revision}: the labels on disk are updated.")
        return entry

    def finish(self) -> None:
        """Leave the edit: remove the region's layers, show the on-disk labels again (re-read)."""
        edit, self.edit = self.edit, None
        if edit is None:
            return
        self.correct_section.new_object()
        for layer in [layer for layer in self.viewer.layers if role_of(layer)[0] == edit.image_name]:
            self.viewer.layers.remove(layer)
        if edit.image_name in self.viewer.layers:
            self.viewer.layers.remove(edit.image_name)
        for layer in edit.hidden:
            if layer in self.viewer.layers:
                layer.visible = True
        for role in edit.paths:
            disk = find_output(self.viewer, edit.slide, role)
            if disk is not None:
                disk.refresh()
        if edit.slide in self.viewer.layers:
            self.segment_section.select(edit.slide)
            self.segment_section.set_resolution(edit.request)  # as it was, not the default
        self._update()
