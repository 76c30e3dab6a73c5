"""The GUI half of ``napari-autosam demo``: drive the real widget through the loop while the user watches.

Each step is what a user would do with the widget's own controls; the demo
only replaces the human parts (drawing the corrected mask) with the sample's
true mask.  Steps are chained on the runners' ``finished`` signals, so the
GUI stays live throughout and the user can interrupt or take over.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import avoid_triton_llvm_clash

avoid_triton_llvm_clash()  # before torch's chain of imports (see napari_autosam._qt)

from .. import demo_loop  # noqa: E402
from ..losses import dice  # noqa: E402


def text_overlay(viewer):
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    return overlays.text if overlays is not None and hasattr(overlays, "text") else viewer.text_overlay


def dismiss_toasts(viewer) -> None:
    """Close napari's notification toasts shown on ``viewer`` (they stay in its notification list)."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    window = getattr(getattr(viewer, "window", None), "_qt_window", None)
    for toast in window.findChildren(NapariQtNotification) if window is not None else ():
        toast.close()


class DemoDriver:
    """Runs the demo's steps one after the other on a viewer holding the H&E sample and the widget.

    ``on_step(name)`` is called after each step (the screenshot script uses it).
    """

    def __init__(self, viewer, widget, folder: Path, *, sam_name: str = "tiny", on_step=None, on_done=None,
                 quit_after: bool = False) -> None:
        self.viewer = viewer
        self.quit_after = quit_after
        self.widget = widget
        self.folder = Path(folder)
        self.sam_name = sam_name
        self.on_step = on_step or (lambda name: None)
        self.on_done = on_done or (lambda summary: None)
        self.started = 0.0
        self.times: dict[str, float] = {}
        self.summary: dict = {}
        self._next = None
        for runner in (widget.model_runner, widget.segment_runner, widget.train_runner):
            runner.finished.connect(self._finished)

    # ---------------------------------------------------------------- plumbing

    def say(self, text: str, position: str = "top_left") -> None:
        overlay = text_overlay(self.viewer)
        overlay.text = text
        overlay.font_size = 10
        overlay.position = position
        overlay.visible = True
        print(f"[{time.perf_counter() - self.started:5.1f} s] {text}", flush=True)

    def _finished(self, title: str, outcome: str) -> None:
        step, self._next = self._next, None
        if step is None:
            return
        if outcome != "done":
            self.say(f"Demo stopped: {title} {outcome}. The widget is yours.")
            return
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, step)  # after the runner's own result handler has shown the result

    def _then(self, step) -> None:
        self._next = step

    @property
    def truth(self) -> np.ndarray:
        return np.asarray(self.viewer.layers["nuclei H&E ground truth"].data)

    # ---------------------------------------------------------------- steps

    def start(self) -> None:
        self.started = time.perf_counter()
        widget = self.widget
        widget.session.set_root(self.folder)
        widget.finetune_section.use_settings(demo_loop.DEMO_TRAINING)  # its boxes show the demo's budget
        widget.model_section.select_sam(self.sam_name)
        widget.segment_section.select("nuclei H&E", "image")
        self.say(demo_loop.STEPS["segment"])
        self._then(self.segmented)
        widget.segment_section.segment()

    def segmented(self) -> None:
        # segment() may have loaded SAM first; the segmentation itself ends here
        if "AutoSAM" not in self.viewer.layers or self.widget.segment_runner.running:
            self._then(self.segmented)
            return
        self.times["untrained"] = time.perf_counter() - self.started
        autosam = self.viewer.layers["AutoSAM"].data
        self.summary["dice_untrained"] = dice(autosam, self.truth)
        self.on_step("segmented")
        # The human part: the corrected mask.  The demo uses the sample's true mask.
        layer = self.viewer.layers["AutoSAM"]
        layer.data = (self.truth > 0).astype(layer.data.dtype)
        self.widget.correct_section.accept()
        demo_loop.accept_extra_corrections(self.widget.session.annotations, " (demo)")
        self.widget.session.annotations_changed.emit()
        self.on_step("accepted")
        self.say(demo_loop.STEPS["accepted"].format(extra=demo_loop.EXTRA_CORRECTIONS))
        self._then(self.trained)
        self.widget.finetune_section.start()

    def trained(self) -> None:
        self.times["trained"] = time.perf_counter() - self.started
        self.say(demo_loop.STEPS["trained"])
        self._then(self.resegmented)  # the fine-tune section starts the re-segmentation itself

    def resegmented(self) -> None:
        self.times["result"] = time.perf_counter() - self.started
        autosam = self.viewer.layers["AutoSAM"].data
        h = self.viewer.layers["h(g(I))"].data
        self.summary.update(dice_autosam=dice(autosam, self.truth), dice_h=dice(h, self.truth),
                            version=self.widget.session.model_label, seconds=self.times["result"], folder=self.folder)
        self.widget.compare_section.compare()
        # below the panes' titles, which the comparison shows at the top of each pane
        # The folder goes to the terminal, not to a notification, and the toasts still open (fine-tuning's
        # "now using ...") are dismissed: napari shows them over the bottom of the canvas, where this caption goes.
        dismiss_toasts(self.viewer)
        ending = "napari closes in a moment." if self.quit_after else "Close napari (Ctrl+Q) to end the demo."
        self.say(demo_loop.summary_text(self.summary) + "\n      " + ending, "bottom_left")
        self.on_step("result")
        self.on_done(self.summary)


def run_gui(folder: Path, *, sam_name: str = "tiny", quit_after: bool = False, screenshot: str | None = None) -> int:
    """Open napari with the sample and the widget, run the demo, and hand napari to the user."""
    from .main_widget import AutoSAMWidget  # noqa: I001  torch's imports before napari draws (see napari_autosam._qt)

    import napari
    from qtpy.QtCore import QTimer

    viewer = napari.Viewer(title="napari-autosam demo")
    viewer.window._qt_window.resize(1500, 950)
    viewer.open_sample("napari-autosam", "nuclei_he")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-autosam", "AutoSAM")
    assert isinstance(widget, AutoSAMWidget)

    def done(summary: dict) -> None:
        print(f"napari-autosam demo: first meaningful result after {summary['seconds']:.0f} s "
              f"(Dice with the true mask: AutoSAM {summary['dice_autosam']:.2f}, h(g(I)) {summary['dice_h']:.2f}; "
              f"untrained {summary['dice_untrained']:.2f}); files in {summary['folder']}"
              + ("" if quit_after else ". napari stays open: close its window (Ctrl+Q) to end the demo."), flush=True)
        if screenshot:
            QTimer.singleShot(500, lambda: viewer.screenshot(screenshot, canvas_only=False))
        if quit_after:
            QTimer.singleShot(1500, viewer.close)

    driver = DemoDriver(viewer, widget, folder, sam_name=sam_name, on_done=done, quit_after=quit_after)
    widget._demo = driver  # keep it alive with the widget
    QTimer.singleShot(300, driver.start)
    napari.run()
    return 0
