"""Fixtures for the GUI tests: a viewer with the AutoSAM widget docked, isolated folders, tiny models."""

from __future__ import annotations

import pytest

#: Fine-tuning settings small enough for a test (seconds on a CPU).
TINY_TRAINING = {"epochs": 2, "h_epochs": 1, "min_steps": 0, "batch_size": 2, "h_batch_size": 2, "variants": ("identity",),
                 "patience": None, "input_size": 128}


@pytest.fixture(autouse=True)
def _isolated_data(tmp_path, monkeypatch):
    """Model versions and annotations go to the test's own folder (the cache is set by tests/conftest.py)."""
    monkeypatch.setenv("NAPARI_AUTOSAM_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("NAPARI_AUTOSAM_SYNC", raising=False)


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def widget(viewer, qtbot):
    """The AutoSAM widget, opened the way a user opens it: from the Plugins menu contribution."""
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-autosam", "AutoSAM")
    widget.model_section.select_sam("tiny")
    widget.session.train_settings = dict(TINY_TRAINING)
    yield widget
    widget.cancel_all()
    qtbot.waitUntil(lambda: not any(r.running for r in widget.runners), timeout=60_000)


@pytest.fixture
def he_sample(viewer):
    """The H&E sample (image and hidden ground truth), opened through napari's sample-data menu path."""
    viewer.open_sample("napari-autosam", "nuclei_he")
    return viewer.layers["nuclei H&E"]


@pytest.fixture
def stack_sample(viewer):
    viewer.open_sample("napari-autosam", "nuclei_3d")
    return viewer.layers["nuclei stack"]


@pytest.fixture
def idle(qtbot, widget):
    """``idle()`` waits until no task of the widget runs (chained tasks included)."""

    def wait(timeout: float = 120.0) -> None:
        qtbot.waitUntil(lambda: not any(r.running for r in widget.runners), timeout=int(timeout * 1000))
        qtbot.wait(20)
        assert not any(r.running for r in widget.runners)

    return wait
