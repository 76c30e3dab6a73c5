"""Section 3, Compare: h(g(I)) and AutoSAM side by side, where they disagree, and their Dice.

Comparing switches napari to grid mode with three panes that share one
camera (pan and zoom move all of them): h(g(I)) over the image, AutoSAM over
the image, and a "disagreement" layer (yellow: only AutoSAM, magenta: only
h(g(I))).  The image under each pane is a second view of the same array
(no copy).  Other layers are hidden while comparing; leaving the comparison
removes the extra views and restores what was visible.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Image
from qtpy.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from . import notify
from .layers import ImageTarget, current_plane, dice, ensure_output, find_output, role_of

VIEW_KEY = "autosam_compare_view"


def grid_of(viewer):
    """The viewer's grid settings (``viewer.canvas.grid`` since napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def disagreement(autosam: np.ndarray, h: np.ndarray) -> np.ndarray:
    """1 where only AutoSAM has foreground, 2 where only h(g(I)) has, 0 where they agree (uint8)."""
    a, b = np.asarray(autosam) > 0, np.asarray(h) > 0
    out = np.zeros(a.shape, np.uint8)
    out[a & ~b] = 1
    out[b & ~a] = 2
    return out


def per_plane_dice(target: ImageTarget, autosam: np.ndarray, h: np.ndarray) -> list[float]:
    if not target.is_stack:
        return [dice(autosam, h)]
    return [dice(autosam[z], h[z]) for z in range(autosam.shape[0])]


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
        self.dice_values: list[float] = []
        self.button = QPushButton("Compare h(g(I)) and AutoSAM")
        self.button.setCheckable(True)
        self.button.setToolTip("Show h(g(I)) and AutoSAM side by side with linked views, and where they "
                               "disagree (Shift+Alt+D toggles)")
        self.button.clicked.connect(self._clicked)
        self.result = QLabel("Segment an image, then compare.")
        self.result.setWordWrap(True)
        self.result.setToolTip("Dice between the two masks (1 = identical); per slice for stacks")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.button)
        layout.addWidget(self.result)

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

    def compare(self) -> bool:
        """Enter the comparison for the current image; returns False (with a message) if there is nothing to compare."""
        target = self.segment_section.target()
        if self.active:
            self.leave()
        autosam = find_output(self.viewer, target.name, "autosam") if target else None
        h = find_output(self.viewer, target.name, "h") if target else None
        if autosam is None or h is None:
            self.button.setChecked(False)
            if target is not None:
                notify.info("Segment the image first: the comparison needs both AutoSAM and h(g(I)).")
            return False
        if autosam.multiscale or h.multiscale:  # a big image's labels on disk: compare a region of it
            self.button.setChecked(False)
            notify.info("Compare works on labels held in memory: for a big image, zoom in, press Edit region "
                        "and compare the region.")
            return False
        marks = disagreement(autosam.data, h.data)
        diff = ensure_output(self.viewer, target, "disagreement")
        diff.data[...] = marks
        diff.refresh()
        self.dice_values = per_plane_dice(target, autosam.data, h.data)
        self.result.setText(format_dice(self.dice_values, current_plane(self.viewer, target) if target.is_stack else None)
                            + "<br><span style='color:#ffe119'>■</span> only AutoSAM  "
                              "<span style='color:#f032e6'>■</span> only h(g(I))")
        self._arrange(target, [h, autosam, diff])
        self.button.setChecked(True)
        return True

    def _arrange(self, target: ImageTarget, overlays: list) -> None:
        """Grid of panes, top-left first: each overlay above its own view of the image."""
        layers = self.viewer.layers
        self._saved = {"order": list(layers), "visible": {id(layer): layer.visible for layer in layers},
                       "grid": (grid_of(self.viewer).enabled, grid_of(self.viewer).stride)}
        image = target.layer
        for layer in layers:
            layer.visible = False
        # napari groups layers into panes by list index (`stride` per pane) and fills the
        # grid from index 0, so the compared layers go to the bottom of the list, in pairs.
        order = []
        for overlay in overlays:
            style = {} if image.rgb else {"colormap": image.colormap}
            view = Image(image.data, name=f"{image.name} · under {overlay.name}", rgb=image.rgb,
                         multiscale=image.multiscale, scale=image.scale, translate=image.translate,
                         contrast_limits=image.contrast_limits, gamma=image.gamma, metadata={VIEW_KEY: True},
                         **style)
            layers.append(view)
            order += [view, overlay]
        for position, layer in enumerate(order):
            layers.move(layers.index(layer), position)
        for layer in order:
            layer.visible = True
        grid_of(self.viewer).stride = 2
        grid_of(self.viewer).enabled = True
        self.viewer.reset_view()  # every pane shows the whole image

    def leave(self) -> None:
        """Back to the normal view: extra image views removed, visibility and grid restored."""
        if self._saved is None:
            self.button.setChecked(False)
            return
        layers = self.viewer.layers
        for layer in [layer for layer in layers if layer.metadata.get(VIEW_KEY)]:
            layers.remove(layer)
        kept = [layer for layer in self._saved["order"] if layer in layers]
        for position, layer in enumerate(kept):
            layers.move(layers.index(layer), position)
        for layer in layers:
            layer.visible = self._saved["visible"].get(id(layer), layer.visible)
            if role_of(layer)[1] == "disagreement":
                layer.visible = False  # shown again by the next comparison
        enabled, stride = self._saved["grid"]
        grid_of(self.viewer).enabled = bool(enabled)
        grid_of(self.viewer).stride = stride
        self._saved = None
        self.button.setChecked(False)
