"""``napari-autosam demo``: the GUI driver on the real widget, and the headless fallback."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from napari_autosam import demo_loop
from napari_autosam.cli import main

pytestmark = pytest.mark.gui

QUICK = {"steps": 3, "h_steps": 2, "time_limit": None, "min_steps": 0, "batch_size": 2, "h_batch_size": 2, "input_size": 128,
         "variants": ("identity",), "patience": None, "lr": 1e-3, "h_lr": 1e-3, "seed": 0}


def fully_in_view(widget, part) -> bool:
    """``part`` of the dock lies wholly inside the dock's scrolled viewport."""
    from qtpy.QtCore import QPoint, QRect

    viewport = widget.scroll.viewport()
    return viewport.rect().contains(QRect(part.mapTo(viewport, QPoint(0, 0)), part.size()))


def test_demo_drives_the_widget_through_the_loop(viewer, widget, he_sample, tmp_path, qtbot, monkeypatch):
    from napari_autosam._qt import demo_driver as qt_demo

    monkeypatch.setattr(demo_loop, "DEMO_TRAINING", QUICK)
    monkeypatch.setattr(demo_loop, "EXTRA_CORRECTIONS", 1)
    steps, summaries, in_view = [], [], []
    fine = widget.finetune_section
    viewer.window._qt_window.resize(1200, 800)
    viewer.window._qt_window.show()  # laid out as a user sees it: the fine-tune section starts below the fold
    widget.train_runner.progress.connect(
        lambda e: e.phase == "train_g" and not in_view and in_view.append(fully_in_view(widget, fine.progress_panel)))
    driver = qt_demo.DemoDriver(viewer, widget, tmp_path / "demo", on_step=steps.append, on_done=summaries.append,
                                quit_after=True)
    QTimer.singleShot(0, driver.start)
    qtbot.waitUntil(lambda: bool(summaries), timeout=180_000)
    [summary] = summaries
    assert steps == ["segmented", "accepted", "result"]
    # every number the widget shows is the one used: the boxes show the demo's budget, and it ran
    used = fine.last_result.model.metadata["training"]
    assert (fine.steps.value(), fine.h_steps.value()) == (used["steps"], used["h_steps"]) == (3, 2)
    assert used["time_limit"] is None
    assert fine.time_limit.value() == 0 and fine.time_limit.text() == "none"
    assert in_view == [True], "fine-tuning's progress comes into view when it starts"
    assert "closes in a moment" in qt_demo.text_overlay(viewer).text
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    toasts = viewer.window._qt_window.findChildren(NapariQtNotification)
    assert not [t for t in toasts if t.isVisible()], "no notification over the result's caption"
    # 2 corrections: both train, a strip of each measures; the model line says so beside the section's count
    assert "trained on 2 images (a strip of each held out to measure the Dice)" in widget.session.describe_model()
    assert "Trains on the 2 accepted corrections. Part of them is kept aside to measure the Dice." in fine.info.text()
    assert "Close napari" not in qt_demo.text_overlay(viewer).text
    assert summary["version"] == "v0001"
    assert 0.0 <= summary["dice_untrained"] <= 1.0 and 0.0 <= summary["dice_autosam"] <= 1.0
    assert widget.session.root == tmp_path / "demo"  # never the working directory
    assert len(widget.session.annotations) == 2
    assert widget.compare_section.active
    assert "4/4" in qt_demo.text_overlay(viewer).text
    qtbot.waitUntil(lambda: not any(r.running for r in widget.runners), timeout=60_000)


def test_demo_without_a_display_runs_headless(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(demo_loop, "DEMO_TRAINING", QUICK)
    monkeypatch.setattr(demo_loop, "EXTRA_CORRECTIONS", 1)
    assert main(["demo", "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "no display found" in captured.err
    assert "headless" in captured.out and "Dice" in captured.out
    for name in ("autosam.tif", "h.tif", "ground_truth.tif", "autosam_untrained.tif", "overview.png"):
        assert (tmp_path / "out" / name).is_file(), name
    assert (tmp_path / "out" / "models" / "tiny" / "v0001.safetensors").is_file()
    import tifffile

    assert tifffile.imread(tmp_path / "out" / "autosam.tif").shape == (384, 384)
    assert np.asarray(tifffile.imread(tmp_path / "out" / "ground_truth.tif")).max() > 10
    assert captured.err.count("g epoch 2/2") <= 1, "a final progress line is printed once"
    from PIL import Image

    overview = Image.open(tmp_path / "out" / "overview.png")
    assert overview.size == (5 * 384, 384 + 2 * 28), "image, truth and three results; captions above, a note below"
    assert demo_loop.OVERVIEW_CAPTIONS[1].startswith("true nuclei")


def test_demo_modules_import_without_a_cycle():
    """The loop's data and steps live in the Qt-free demo_loop; the GUI half never imports the CLI."""
    import inspect

    from napari_autosam._qt import demo_driver as qt_demo
    from napari_autosam.cli import demo_command as cli_demo

    assert "cli" not in inspect.getsource(qt_demo).split('"""', 2)[2].split("class DemoDriver")[0]
    assert qt_demo.demo_loop is demo_loop
    assert not hasattr(cli_demo, "run_headless") and not hasattr(cli_demo, "DEMO_TRAINING")
