"""Take docs/qupath.md's screenshot: the Review section over a synthetic slide with one unfamiliar region.

    python docs/make_review_screenshot.py      # re-runs itself under xvfb-run when there is no display

The slide is 3×3 tiles of synthetic fluorescent nuclei with one tile replaced
by a washed-out stain; the model is the known-answer threshold model
(``napari_autosam.inference.testing``: "nuclei are bright"), the SAM the tiny
one (offline), and the review a fast one (h only), so it takes seconds.
Writes docs/images/08-review.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "images" / "08-review.png"
TILE = 512


def _ensure_display() -> None:
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        if shutil.which("xvfb-run") and not os.environ.get("_AUTOSAM_SHOTS_XVFB"):
            env = {**os.environ, "_AUTOSAM_SHOTS_XVFB": "1"}
            sys.exit(subprocess.call(["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, *sys.argv],
                                     env=env))
        sys.exit("no display: run under a desktop session or install xvfb (xvfb-run)")


def slide() -> np.ndarray:
    from napari_autosam.data.synthetic import make_review_slide

    return make_review_slide(TILE, seed=300)[0]


def offline_viewer():
    """A napari viewer for a screenshot, with a throw-away data folder and tasks in the GUI thread."""
    _ensure_display()
    tmp = Path(tempfile.mkdtemp(prefix="autosam-shots-"))
    os.environ["NAPARI_AUTOSAM_DATA"] = str(tmp / "data")
    os.environ.setdefault("NAPARI_AUTOSAM_CACHE", str(tmp / "cache"))
    os.environ["NAPARI_AUTOSAM_SYNC"] = "1"  # tasks in the GUI thread: the screenshot follows them
    from napari_autosam._qt.main_widget import AutoSAMWidget  # noqa: F401, I001  (torch before OpenGL)

    import napari

    viewer = napari.Viewer(title="napari-autosam")
    viewer.window._qt_window.resize(1500, 950)
    return tmp, viewer


def autosam_widget(viewer, model, label: str):
    """The AutoSAM dock widget with the tiny SAM (offline) and a known-answer ``model`` loaded."""
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-autosam", "AutoSAM")
    widget.model_section.select_sam("tiny")
    widget.model_section.load()
    widget.session.segmenter.set_model(model)
    widget.session.model_label = label
    return widget


def save(viewer, out: Path) -> None:
    from qtpy.QtWidgets import QApplication

    QApplication.instance().processEvents()
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False)
    print(f"wrote {out}")
    viewer.close()


def main() -> None:
    _tmp, viewer = offline_viewer()
    from napari_autosam.inference.testing import threshold_model

    viewer.add_image(slide(), name="slide")
    widget = autosam_widget(viewer, threshold_model(0.5), "threshold model (known answer)")
    widget.segment_section.select("slide")
    review = widget.review_section
    review.preview_check.setChecked(True)
    review.review()
    review.go_to_next()  # outlines the most unsure region ("review region")
    viewer.layers.selection.active = viewer.layers["review scores"]
    viewer.reset_view()
    widget.show_section(review)
    save(viewer, OUT)


if __name__ == "__main__":
    main()
