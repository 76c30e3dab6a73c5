"""Take the user guide's screenshots: the real widget driven through the loop under a display.

    python docs/make_screenshots.py            # re-runs itself under xvfb-run when there is no display

Writes docs/images/*.png.  Uses the tiny SAM (offline), a fresh temporary data
folder, and the demo's fine-tuning settings, so it takes about two minutes on
a laptop CPU.  Look at the pictures after a change to the widget.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "images"
SIZE = (1500, 950)


def _ensure_display() -> None:
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        if shutil.which("xvfb-run") and not os.environ.get("_AUTOSAM_SHOTS_XVFB"):
            env = {**os.environ, "_AUTOSAM_SHOTS_XVFB": "1"}
            sys.exit(subprocess.call(["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, *sys.argv], env=env))
        sys.exit("no display: run under a desktop session or install xvfb (xvfb-run)")


def main() -> None:
    _ensure_display()
    tmp = Path(tempfile.mkdtemp(prefix="autosam-shots-"))
    os.environ["NAPARI_AUTOSAM_DATA"] = str(tmp / "data")
    os.environ.setdefault("NAPARI_AUTOSAM_CACHE", str(tmp / "cache"))
    from napari_autosam._qt.main_widget import AutoSAMWidget  # noqa: F401, I001  (torch before OpenGL)

    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_autosam._qt.demo_driver import DemoDriver, text_overlay

    OUT.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="napari-autosam")
    viewer.window._qt_window.resize(*SIZE)
    viewer.open_sample("napari-autosam", "nuclei_he")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-autosam", "AutoSAM")
    app = QApplication.instance()
    taken: list[str] = []

    def shot(name: str, *, widget_only: bool = False) -> None:
        from qtpy.QtWidgets import QWidget

        for toast in viewer.window._qt_window.findChildren(QWidget):
            if type(toast).__name__ == "NapariQtNotification":
                toast.close()  # transient notifications would cover the canvas in a still picture
        for _ in range(5):  # nested layouts (wrapped labels in a scroll area) settle over a few passes
            app.processEvents()
        path = OUT / f"{name}.png"
        if widget_only:
            widget.grab().save(str(path))
        else:
            viewer.screenshot(str(path), canvas_only=False)
        taken.append(path.name)
        print(f"  wrote {path}", flush=True)

    training_shot = {"done": False}

    def during_training(event) -> None:
        # one picture of the live plot, once h has started training
        if not training_shot["done"] and event.phase == "train_h" and event.step >= 6:
            training_shot["done"] = True
            widget.show_section(widget.finetune_section)
            shot("05-fine-tune")

    widget.train_runner.progress.connect(during_training)

    def on_step(name: str) -> None:
        if name == "segmented":
            shot("02-segment-untrained")
        elif name == "accepted":
            widget.show_section(widget.correct_section)
            shot("04-accept", widget_only=True)

    def on_done(summary: dict) -> None:
        widget.show_section(widget.compare_section)
        QTimer.singleShot(300, finish)

    def finish() -> None:
        shot("03-compare")
        widget.compare_section.leave()
        correct()

    def correct() -> None:
        # A correction with napari's own brush: paint in the nucleus AutoSAM missed most.
        import numpy as np

        text_overlay(viewer).visible = False
        viewer.layers["h(g(I))"].visible = False
        autosam = viewer.layers["AutoSAM"]
        truth = np.asarray(viewer.layers["nuclei H&E ground truth"].data)
        inner = np.zeros(truth.shape, bool)
        inner[80:-80, 80:-80] = True  # away from the edges, so the zoomed view is full
        ids = [i for i in np.unique(truth[inner]) if i and (truth == i).sum() > 150]
        missed = min(ids, key=lambda i: (autosam.data[truth == i] > 0).mean())
        ys, xs = np.nonzero(truth == missed)
        camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
        camera.center, camera.zoom = (float(ys.mean()), float(xs.mean())), 4.0
        viewer.layers.selection.active = autosam
        autosam.mode = "paint"
        autosam.selected_label = 1
        todo = autosam.data[ys, xs] == 0
        autosam.data_setitem((ys[todo], xs[todo]), 1)  # what brush strokes over the nucleus write
        widget.show_section(widget.correct_section)
        QTimer.singleShot(300, after_paint)

    def after_paint() -> None:
        shot("06-correct")
        widget.show_section(widget.finetune_section)
        shot("07-versions", widget_only=True)
        viewer.close()

    driver = DemoDriver(viewer, widget, tmp / "data" / "demo", on_step=on_step, on_done=on_done)
    widget._demo = driver

    def begin() -> None:
        widget.model_section.select_sam("tiny")
        widget.show_section(widget.model_section)
        shot("01-open")
        driver.start()

    QTimer.singleShot(500, begin)
    napari.run()
    print(f"{len(taken)} screenshots in {OUT}: {', '.join(taken)}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
