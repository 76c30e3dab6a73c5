"""Section 3, Compare: h(g(I)) and AutoSAM side by side, where they disagree, and their Dice.

Comparing switches napari to grid mode with four titled panes that share one
camera (pan and zoom move all of them)::

    h(g(I))        AutoSAM
    disagreement   the image

The masks are the output layers themselves and the image is its own layer:
nothing is copied and nothing is added to the layer list.  Other layers are
hidden while comparing; leaving restores the layer order, visibility, grid,
titles and camera, and selects the AutoSAM layer for editing.  The Dice is
recomputed whenever the image is segmented again.  The numbers come from
:mod:`napari_autosam.inference.agreement`; this widget only shows them.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from . import avoid_triton_llvm_clash

avoid_triton_llvm_clash()  # before torch's chain of imports (see napari_autosam._qt)

from ..inference.agreement import disagreement, per_plane_dice  # noqa: E402
from . import notify  # noqa: E402
from .layers import ImageTarget, camera_of, current_plane, ensure_output, find_output, focus_for_editing  # noqa: E402

#: The panes, top-left first (row by row): output roles, then the image itself.
PANES = ("h", "autosam", "disagreement", "image")
LEGEND = ("<span style='color:#ffe119'>■</span> only AutoSAM  <span style='color:#f032e6'>■</span> only h(g(I))"
          "<br>Panes: h(g(I)) | AutoSAM (top), disagreement | image (bottom)")


def grid_of(viewer):
    """The viewer's grid settings (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def format_dice(values: list[float], current: int | None = None) -> str:
    if len(values) == 1:
        return f"Dice(h(g(I)), AutoSAM) = {values[0]:.3f}"
    lines = [f"Dice(h(g(I)), AutoSAM): mean {np.mean(values):.3f}, per slice:"]
    cells = [f"<b>{z}: {v:.2f}</b>" if z == current else f"{z}: {v:.2f}" for z, v in enumerate(values)]
    lines += ["  ".join(cells[i : i + 6]) for i in range(0, len(cells), 6)]
    return "<br>".join(lines)


class CompareSection(QWidget):
    """One button toggles the side-by-side comparison of the segment section's current image."""

    def __init__(self, viewer, segment_section, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.segment_section = segment_section
        self._saved: dict | None = None
        self.image_name: str | None = None
        self.dice_values: list[float] = []
        self.button = QPushButton("Compare h(g(I)) and AutoSAM")
        self.button.setCheckable(True)
        self.button.setToolTip("Show h(g(I)), AutoSAM, where they disagree and the image in four linked panes "
                               "(Shift+Alt+D toggles)")
        self.button.clicked.connect(self._clicked)
        self.result = QLabel("Segment an image, then compare.")
        self.result.setWordWrap(True)
        self.result.setToolTip("Dice between the two masks (1 = identical); per slice for stacks")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.button)
        layout.addWidget(self.result)
        segment_section.segmented.connect(self._segmented)

    @property
    def active(self) -> bool:
        return self._saved is not None

    def _clicked(self, checked: bool) -> None:
        if checked:
            self.compare()
        else:
            self.leave()

    def toggle(self) -> None:
        self.leave() if self.active else self.compare()

    # ---------------------------------------------------------------- numbers

    def _outputs(self, target: ImageTarget | None):
        if target is None:
            return None, None
        return find_output(self.viewer, target.name, "autosam"), find_output(self.viewer, target.name, "h")

    def update_numbers(self, target: ImageTarget) -> bool:
        """Recompute the disagreement layer and the Dice of ``target``'s two masks; False if one is missing."""
        autosam, h = self._outputs(target)
        if autosam is None or h is None or autosam.multiscale or h.multiscale:
            return False
        diff = ensure_output(self.viewer, target, "disagreement")
        diff.data[...] = disagreement(autosam.data, h.data)
        diff.refresh()
        self.dice_values = per_plane_dice(autosam.data, h.data, stack=target.is_stack)
        current = current_plane(self.viewer, target) if target.is_stack else None
        self.result.setText(format_dice(self.dice_values, current) + "<br>" + LEGEND)
        self.image_name = target.name
        return True

    def _segmented(self, image_name: str) -> None:
        """Keep the Dice (and, while comparing, the disagreement) in step with a new segmentation."""
        if image_name != self.image_name:
            return
        target = self.segment_section.target(quiet=True)
        if target is None or target.name != image_name:
            return
        self.update_numbers(target)

    # ---------------------------------------------------------------- view

    def compare(self) -> bool:
        """Enter the comparison for the current image; returns False (with a message) if there is nothing to compare."""
        target = self.segment_section.target()
        if self.active:
            self.leave()
        if any(layer is not None and layer.multiscale for layer in self._outputs(target)):
            self.button.setChecked(False)  # a big image's labels on disk: compare a region of it
            notify.info("Compare works on labels held in memory: for a big image, zoom in, press Edit region "
                        "and compare the region.")
            return False
        if target is None or not self.update_numbers(target):
            self.button.setChecked(False)
            if target is not None:
                notify.info("Segment the image first: the comparison needs both AutoSAM and h(g(I)).")
            return False
        panes = [find_output(self.viewer, target.name, role) for role in PANES[:3]] + [target.layer]
        self._arrange(panes)
        self.button.setChecked(True)
        return True

    def _arrange(self, panes: list) -> None:
        """One layer per pane of a 2×2 grid, titled with its name; everything else hidden."""
        layers, grid, camera = self.viewer.layers, grid_of(self.viewer), camera_of(self.viewer)
        # keyed by unique_id: a plugin sees layers through proxies, so id() changes between accesses
        self._saved = {"order": list(layers), "visible": {layer.unique_id: layer.visible for layer in layers},
                       "titles": {layer.unique_id: layer.name_overlay.visible for layer in panes},
                       "grid": (grid.enabled, grid.stride, grid.shape),
                       "camera": (tuple(camera.center), camera.zoom)}
        for layer in layers:
            layer.visible = False
        # napari fills the grid from list index 0, `stride` layers per pane.
        for position, layer in enumerate(panes):
            layers.move(layers.index(layer), position)
        for layer in panes:
            layer.visible = True
            layer.name_overlay.visible = True
        grid.stride, grid.shape, grid.enabled = 1, (2, 2), True
        self.viewer.reset_view()  # every pane shows the whole image

    def leave(self) -> None:
        """Back to the normal view: order, visibility, titles, grid and camera restored; AutoSAM selected."""
        if self._saved is None:
            self.button.setChecked(False)
            return
        saved, self._saved = self._saved, None
        layers = self.viewer.layers
        kept = [layer for layer in saved["order"] if layer in layers]
        for position, layer in enumerate(kept):
            layers.move(layers.index(layer), position)
        for layer in layers:
            layer.visible = saved["visible"].get(layer.unique_id, layer.visible)
            if layer.unique_id in saved["titles"]:
                layer.name_overlay.visible = saved["titles"][layer.unique_id]
        grid = grid_of(self.viewer)
        grid.enabled, grid.stride, grid.shape = saved["grid"][0], saved["grid"][1], saved["grid"][2]
        camera = camera_of(self.viewer)
        camera.center, camera.zoom = saved["camera"]
        if self.image_name is not None:
            focus_for_editing(self.viewer, self.image_name)  # also hides the disagreement again
        self.button.setChecked(False)
