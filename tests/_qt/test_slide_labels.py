"""Big images in the real widget: results shown lazily from OME-Zarr on disk; Edit region → paint → accept."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from napari.utils.notifications import notification_manager
from qtpy.QtCore import Qt

from napari_autosam.data.synthetic import make_nuclei_image
from napari_autosam.io import labels_zarr
from napari_autosam.io.labels_zarr import LabelImage

pytestmark = pytest.mark.gui

SHAPE = (300, 340)


def click(qtbot, button):
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


@pytest.fixture
def slide(viewer, tmp_path, monkeypatch):
    """A lazy two-level RGB 'slide' at 0.5 µm/px that counts as big (the threshold lowered to 200²)."""
    monkeypatch.setattr(labels_zarr, "ON_DISK_ABOVE", 200 * 200)
    pixels = np.concatenate([make_nuclei_image((SHAPE[0], 170), seed=s, stain="he")[0] for s in (3, 4)], axis=1)
    levels = []
    for k, level in enumerate((pixels, pixels[::2, ::2])):
        array = zarr.create_array(store=str(tmp_path / f"slide{k}.zarr"), shape=level.shape, chunks=(128, 128, 3),
                                  dtype=level.dtype)
        array[:] = level
        levels.append(array)
    return viewer.add_image(levels, multiscale=True, rgb=True, name="slide", scale=(0.5, 0.5),
                            translate=(100.0, 200.0), metadata={"mpp": 0.5})


def _segment(qtbot, widget, idle, scope):
    seg = widget.segment_section
    seg.select("slide", scope)
    click(qtbot, seg.segment_button)
    idle()


def _zoom(viewer, qtbot, center, zoom):
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center = center
    camera.zoom = zoom
    qtbot.wait(50)


def test_big_image_results_are_multiscale_layers_read_from_disk(viewer, widget, slide, qtbot, idle, tmp_path):
    _segment(qtbot, widget, idle, "image")
    autosam, h = viewer.layers["AutoSAM"], viewer.layers["h(g(I))"]
    for layer in (autosam, h):
        assert layer.multiscale and all(isinstance(level, zarr.Array) for level in layer.data)
        assert tuple(layer.data[0].shape) == SHAPE
        assert list(layer.scale) == [0.5, 0.5] and list(layer.translate) == [100.0, 200.0]
    path = autosam.metadata["autosam"]["path"]
    assert path.startswith(str(tmp_path / "data" / "labels")) and path.endswith("slide_autosam.ome.zarr")
    on_disk = LabelImage.open(path)
    assert on_disk.attributes["resolution"] == {"level": 0, "downsample": 1.0, "mpp": 0.5}
    assert "stored in" in widget.segment_section.note.text()

    # the visible region again: only that part of the labels on disk changes
    LabelImage.open(path, mode="r+").update_region((0, SHAPE[0], 0, SHAPE[1]), np.full(SHAPE, 1, np.uint8))
    _zoom(viewer, qtbot, (100 + 60, 200 + 80), 6)
    _segment(qtbot, widget, idle, "region")
    y0, y1, x0, x1 = widget.segment_section.last_region
    labels = LabelImage.open(path).read_region((0, SHAPE[0], 0, SHAPE[1]))
    outside = np.ones(SHAPE, bool)
    outside[y0:y1, x0:x1] = False
    assert outside.any() and labels[outside].all(), "outside the visible region nothing changed"
    assert not labels[y0:y1, x0:x1].all()
    assert viewer.layers["AutoSAM"] is autosam, "the same layer shows the update"

    notification_manager.records.clear()
    assert not widget.compare_section.compare()
    assert any("Edit region" in str(n.message) for n in notification_manager.records)


def test_edit_region_paint_prompt_accept(viewer, widget, slide, qtbot, idle):
    _segment(qtbot, widget, idle, "image")
    disk = viewer.layers["AutoSAM"]
    path = disk.metadata["autosam"]["path"]
    before = LabelImage.open(path).read_region((0, SHAPE[0], 0, SHAPE[1]))
    editor, cor = widget.region_editor, widget.correct_section

    notification_manager.records.clear()
    click(qtbot, cor.accept_button)
    assert any("press Edit region" in str(n.message) for n in notification_manager.records), "on-disk layers: say so"

    _zoom(viewer, qtbot, (100 + 70, 200 + 90), 6)
    click(qtbot, editor.edit_button)
    y0, y1, x0, x1 = box = editor.edit.box
    region = viewer.layers["AutoSAM [slide · region]"]
    assert not region.multiscale and region.data.shape == (y1 - y0, x1 - x0)
    np.testing.assert_array_equal(region.data, before[y0:y1, x0:x1])
    assert list(region.scale) == [0.5, 0.5] and list(region.translate) == [100 + 0.5 * y0, 200 + 0.5 * x0]
    assert not disk.visible, "the on-disk layer is hidden while its region is edited"
    assert widget.segment_section.image_combo.currentText() == "slide · region"

    # napari's brush, then a SAM point prompt on the region layer
    region.brush_size = 9
    region.paint((10, 12), 7)
    assert region.data[10, 12] == 7
    click(qtbot, cor.positive_button)
    points = viewer.layers["SAM points"]
    drawn = int(region.data.max())
    points.add([(y1 - y0) // 2, (x1 - x0) // 2])
    idle()
    assert int(region.data.max()) == drawn + 1, "SAM drew an object with a new label in the region"
    edited = np.array(region.data)
    assert widget.compare_section.compare(), "Compare works on the region being edited"
    widget.compare_section.leave()

    click(qtbot, cor.accept_button)  # the Correct section's Accept takes the region being edited
    after = LabelImage.open(path)
    labels = after.read_region((0, SHAPE[0], 0, SHAPE[1]))
    np.testing.assert_array_equal(labels[y0:y1, x0:x1], edited)
    outside = np.ones(SHAPE, bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(labels[outside], before[outside])
    np.testing.assert_array_equal(np.asarray(after.levels[1]),
                                  labels_zarr.downsample_labels(labels)), "the pyramid follows"
    [entry] = widget.session.annotations.entries()
    assert entry.region == box and entry.source == entry.extra["slide"] and entry.layer_name == "slide"
    assert entry.extra["resolution"] == {"level": 0, "downsample": 1.0, "mpp": 0.5}
    assert entry.extra["working_box"] == list(box) and entry.extra["level0_box"] == list(box)
    image, mask = widget.session.annotations.load(entry)
    np.testing.assert_array_equal(mask, edited)
    np.testing.assert_array_equal(image, np.asarray(slide.data[0][y0:y1, x0:x1]))
    assert "slide · region" not in viewer.layers and "SAM points" not in viewer.layers
    assert disk.visible and editor.edit is None
    assert widget.segment_section.image_combo.currentText() == "slide"


def test_edit_region_refuses_too_big_or_outside_in_one_line(viewer, widget, slide, qtbot, idle, monkeypatch):
    from napari_autosam import slide_regions

    _segment(qtbot, widget, idle, "image")
    editor = widget.region_editor
    monkeypatch.setattr(slide_regions, "MAX_EDIT_SIDE", 100)
    viewer.reset_view()
    notification_manager.records.clear()
    assert not editor.start()
    _zoom(viewer, qtbot, (-5000, -5000), 6)
    assert not editor.start()
    messages = [str(n.message) for n in notification_manager.records]
    assert any("zoom in until it is at most 100²" in m for m in messages), messages
    assert any("does not show any part of the image" in m for m in messages), messages
    assert all("\n" not in m and "Traceback" not in m for m in messages)
    assert editor.edit is None and "slide · region" not in viewer.layers


def test_labels_at_a_coarser_working_resolution_overlay_the_slide(viewer, widget, slide, qtbot, idle, monkeypatch):
    """At level 1 (2 level-0 pixels per label pixel) the labels sit over the slide and regions map back to level 0."""
    monkeypatch.setattr(labels_zarr, "ON_DISK_ABOVE", 100 * 100)
    slide.metadata = {**slide.metadata, "source": "slide.svs", "vendor": "test", "backend": "zarr", "mpp": [0.5, 0.5],
                      "downsamples": [1.0, 2.0], "objective_power": 20.0, "units": "µm"}
    seg = widget.segment_section
    seg.refresh_images()  # the layer is a slide now: its levels appear in the Resolution control
    seg.select("slide", "image")
    seg.set_resolution({"level": 1})
    assert seg.resolution_request() == {"level": 1}
    click(qtbot, seg.segment_button)
    idle()
    autosam = viewer.layers["AutoSAM"]
    assert autosam.multiscale and tuple(autosam.data[0].shape) == (150, 170)
    assert list(autosam.scale) == [1.0, 1.0] and list(autosam.translate) == [100.25, 200.25]
    on_disk = LabelImage.open(autosam.metadata["autosam"]["path"])
    assert on_disk.attributes["resolution"] == {"level": 1, "downsample": 2.0, "mpp": 1.0}

    _zoom(viewer, qtbot, (100 + 60, 200 + 80), 6)
    assert widget.region_editor.start()
    y0, y1, x0, x1 = box = widget.region_editor.edit.box
    region = viewer.layers["AutoSAM [slide · region]"]
    assert region.data.shape == (y1 - y0, x1 - x0) and list(region.scale) == [1.0, 1.0]
    assert list(region.translate) == [100.25 + y0, 200.25 + x0]
    region.paint((3, 3), 9)
    entry = widget.region_editor.accept()
    assert entry.extra["resolution"] == {"level": 1, "downsample": 2.0, "mpp": 1.0}
    assert entry.extra["working_box"] == list(box) and entry.extra["level0_box"] == [2 * v for v in box]
    assert LabelImage.open(on_disk.path).read_region(box)[3, 3] == 9
    assert seg.resolution_request() == {"level": 1}, "the slide's resolution choice is kept"


def test_reopening_a_big_image_shows_its_stored_labels(viewer, widget, slide, qtbot, idle):
    _segment(qtbot, widget, idle, "image")
    path = viewer.layers["AutoSAM"].metadata["autosam"]["path"]
    stored = LabelImage.open(path).read_region((0, SHAPE[0], 0, SHAPE[1]))
    levels = list(slide.data)
    viewer.layers.clear()  # closed, as at the end of a session …
    viewer.add_image(levels, multiscale=True, rgb=True, name="slide", scale=(0.5, 0.5), translate=(100.0, 200.0),
                     metadata={"mpp": 0.5})  # … and opened again
    qtbot.waitUntil(lambda: "AutoSAM" in viewer.layers and "h(g(I))" in viewer.layers, timeout=5000)
    autosam = viewer.layers["AutoSAM"]
    assert autosam.multiscale and autosam.metadata["autosam"]["path"] == path
    assert list(autosam.scale) == [0.5, 0.5] and list(autosam.translate) == [100.0, 200.0]
    np.testing.assert_array_equal(np.asarray(autosam.data[0]), stored)
    assert "from an earlier session" in widget.segment_section.note.text()
    # the stored labels can be corrected straight away
    _zoom(viewer, qtbot, (100 + 70, 200 + 90), 6)
    click(qtbot, widget.region_editor.edit_button)
    y0, y1, x0, x1 = widget.region_editor.edit.box
    np.testing.assert_array_equal(viewer.layers["AutoSAM [slide · region]"].data, stored[y0:y1, x0:x1])
