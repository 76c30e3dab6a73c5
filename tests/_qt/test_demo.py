"""``napari-autosam demo``: the GUI driver on the real widget, and the headless fallback."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from napari_autosam import demo_loop
from napari_autosam.cli import main

pytestmark = pytest.mark.gui

QUICK = {"epochs": 2, "h_epochs": 2, "min_steps": 0, "batch_size": 2, "h_batch_size": 2, "input_size": 128, "variants": ("identity",),
         "patience": None, "lr": 1e-3, "h_lr": 1e-3, "seed": 0}


def test_demo_drives_the_widget_through_the_loop(viewer, widget, he_sample, tmp_path, qtbot, monkeypatch):
    from napari_autosam._qt import demo_driver as qt_demo

    monkeypatch.setattr(demo_loop, "DEMO_TRAINING", QUICK)
    monkeypatch.setattr(demo_loop, "EXTRA_CORRECTIONS", 1)
    steps, summaries = [], []
    driver = qt_demo.DemoDriver(viewer, widget, tmp_path / "demo", on_step=steps.append, on_done=summaries.append)
    QTimer.singleShot(0, driver.start)
    qtbot.waitUntil(lambda: bool(summaries), timeout=180_000)
    [summary] = summaries
    assert steps == ["segmented", "accepted", "result"]
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
    assert overview.size[0] == 4 * 384 and overview.size[1] > 384, "four panels with a caption band above"


def test_demo_modules_import_without_a_cycle():
    """The loop's data and steps live in the Qt-free demo_loop; the GUI half never imports the CLI."""
    import inspect

    from napari_autosam._qt import demo_driver as qt_demo
    from napari_autosam.cli import demo_command as cli_demo

    assert "cli" not in inspect.getsource(qt_demo).split('"""', 2)[2].split("class DemoDriver")[0]
    assert qt_demo.demo_loop is demo_loop
    assert not hasattr(cli_demo, "run_headless") and not hasattr(cli_demo, "DEMO_TRAINING")
