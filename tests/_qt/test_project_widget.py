"""A slide project in the widget: segment a slide, correct a region, close, reopen in a fresh viewer: all is back."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from napari.utils.notifications import notification_manager
from qtpy.QtCore import Qt

from napari_autosam.data.synthetic_slides import pattern, write_svs
from napari_autosam.io import labels_zarr
from napari_autosam.io.labels_zarr import LabelImage
from napari_autosam.models.checkpoint import save_checkpoint
from napari_autosam.project import Project
from napari_autosam.training import TrainConfig, initial_model

sys.path.insert(0, str(Path(__file__).parents[1]))
from test_project import aperio_sample  # noqa: E402

pytestmark = pytest.mark.gui


def click(qtbot, button):
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: not any(r.running for r in widget.runners), timeout=120_000)
    qtbot.wait(20)


def _versions(store, count):
    model = initial_model(TrainConfig(generator="hardnet_small", input_size=128))
    for _ in range(count):
        name, path = store.reserve()
        save_checkpoint(path, model.prompt_generator, model.surrogate, sam_variant="tiny")
        store.release(name)


def _zoom(viewer, qtbot, center, zoom):
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center = center
    camera.zoom = zoom
    qtbot.wait(50)


def test_a_project_brings_back_labels_corrections_review_and_model_in_a_fresh_viewer(
        make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(labels_zarr, "ON_DISK_ABOVE", 200 * 200)  # these small slides count as big
    folder = tmp_path / "slides"
    folder.mkdir()
    svs = write_svs(folder / "biopsy.svs", pattern(320, 384, seed=1), downsamples=(4,))
    second = folder / "cmu.svs"
    real = aperio_sample()
    shutil.copyfile(real, second) if real else write_svs(second, pattern(256, 256, seed=2), downsamples=(4,))

    # day 1: a project with two slides; segment one, correct a region of it
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-autosam", "AutoSAM")
    widget.model_section.select_sam("tiny")
    section = widget.project_section
    assert section.create_project(tmp_path / "proj")
    a, b = section.add_slides([svs, second])
    assert section.slide_list.count() == 2
    widget.model_section.load()
    _wait(qtbot, widget)
    store = widget.session.model_store
    assert store.root.parent == tmp_path / "proj" / "models"
    _versions(store, 2)
    widget.session.use_version("v0001")  # an older version in use: the pointer, not the newest, must come back
    image = section.open_slide(a.id)
    seg = widget.segment_section
    seg.select(image.name, "image")
    click(qtbot, seg.segment_button)
    _wait(qtbot, widget)
    disk = viewer.layers["AutoSAM"]
    path = Path(disk.metadata["autosam"]["path"])
    assert path.parent == tmp_path / "proj" / "slides" / a.id / "labels"
    center = np.asarray(image.translate[-2:]) + np.asarray(image.scale[-2:]) * (160, 190)
    _zoom(viewer, qtbot, tuple(center), 6)
    click(qtbot, widget.region_editor.edit_button)
    box = widget.region_editor.edit.box
    region = viewer.layers[f"AutoSAM [{image.name} · region]"]
    region.data = np.full(region.data.shape, 5, region.data.dtype)  # the pathologist's correction
    click(qtbot, widget.correct_section.accept_button)
    project = Project(tmp_path / "proj")
    assert [e.extra["working_box"] for e in project.corrections(a.id)] == [list(box)]
    stored = LabelImage.open(path).read_region((0, 320, 0, 384))
    assert (stored[box[0]:box[1], box[2]:box[3]] == 5).all()
    assert widget.review_section.review()  # Review keeps the slide's scores in the project
    _wait(qtbot, widget)
    scores = [r.score for r in widget.review_section.regions]
    assert scores and project.outputs(a.id)["review"] == project.output_path(a.id, "review")
    viewer.close()

    # day 2: a fresh viewer, the project opened again
    fresh = make_napari_viewer()
    _dock, again = fresh.window.add_plugin_dock_widget("napari-autosam", "AutoSAM")
    again.model_section.select_sam("tiny")
    assert again.project_section.open_project(tmp_path / "proj")
    again.model_section.load()
    _wait(qtbot, again)
    assert again.session.version == "v0001" and again.session.model is not None, "the active model is back"
    image = again.project_section.open_slide(a.id)
    qtbot.waitUntil(lambda: "AutoSAM" in fresh.layers, timeout=10_000)
    labels = fresh.layers["AutoSAM"]
    assert labels.multiscale and labels.metadata["autosam"]["path"] == str(path)
    np.testing.assert_array_equal(np.asarray(labels.data[0]), stored)
    corrections = fresh.layers[f"corrections [{image.name}]"]
    assert len(corrections.data) == 1 and list(corrections.scale) == list(image.scale[-2:])
    np.testing.assert_allclose(corrections.data[0].min(axis=0), np.array([box[0], box[2]]) - 0.5)
    np.testing.assert_allclose(fresh.layers[f"review [{image.name}]"].properties["score"], scores, atol=1e-4)
    # the labels can be corrected again straight away
    _zoom(fresh, qtbot, tuple(center), 6)
    click(qtbot, again.region_editor.edit_button)
    np.testing.assert_array_equal(fresh.layers[f"AutoSAM [{image.name} · region]"].data[:2, :2], 5)
    again.region_editor.finish()

    # a slide replaced by another file is refused, in one line
    write_svs(second, pattern(300, 300, seed=9), downsamples=(4,))
    notification_manager.records.clear()
    assert again.project_section.open_slide(b.id) is None
    messages = [str(n.message) for n in notification_manager.records]
    assert any("not the file that was added" in m and "cmu.svs" in m for m in messages), messages
