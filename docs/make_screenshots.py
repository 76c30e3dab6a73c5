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
    from napari_autosam._qt.main_widget import AutoSAMWidget  # noqa: F401  (torch before OpenGL)

    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    from napari_autosam._qt.demo import DemoDriver, text_overlay

    OUT.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="napari-autosam")
    viewer.window._qt_window.resize(*SIZE)
    viewer.open_sample("napari-autosam", "nuclei_he")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-autosam", "AutoSAM")
    app = QApplication.instance()
    taken: list[str] = []

    def shot(name: str, *, widget_only: bool = False) -> None:
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
        # SAM point prompts on one nucleus, zoomed in
        camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
        camera.center, camera.zoom = (140, 110), 4.0
        text_overlay(viewer).visible = False
        viewer.layers["h(g(I))"].visible = False  # AutoSAM and the prompted object only
        widget.show_section(widget.correct_section)
        widget.correct_section.start_box()
        viewer.layers["SAM box"].add_rectangles([[100, 80], [140, 120]])
        widget.correct_section.start_points(True)
        viewer.layers["SAM points"].add([[118, 98]])
        waited = {"n": 0}

        def after_prompt() -> None:
            if widget.correct_section.prompt_runner.running and waited["n"] < 100:
                waited["n"] += 1
                QTimer.singleShot(100, after_prompt)
                return
            shot("06-correct-prompt")
            widget.show_section(widget.finetune_section)
            shot("07-versions", widget_only=True)
            viewer.close()

        QTimer.singleShot(200, after_prompt)

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
