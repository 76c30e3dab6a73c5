"""The pathologist's loop in the widget: preview with h only, the review list, and QuPath GeoJSON files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_autosam._qt.layers import find_output
from napari_autosam.data.synthetic import make_nuclei_image, make_review_slide
from napari_autosam.inference.testing import threshold_model
from napari_autosam.io.geojson import labels_to_features, write_geojson

pytestmark = pytest.mark.gui


def click(qtbot, button):
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def load_sam(widget, idle):
    widget.model_section.load()
    idle()
    assert widget.session.segmenter is not None


def test_preview_button_fills_h_without_running_sam(viewer, widget, he_sample, qtbot, idle, monkeypatch):
    load_sam(widget, idle)
    sam = widget.session.segmenter.sam

    def forbidden(*args, **kwargs):
        raise AssertionError("the preview ran SAM")

    monkeypatch.setattr(sam.image_encoder, "forward", forbidden)
    monkeypatch.setattr(sam.mask_decoder, "forward", forbidden)
    seg = widget.segment_section
    seg.select(he_sample.name, "image")
    assert seg.preview_button.text() == "Preview (h only)"
    click(qtbot, seg.preview_button)
    idle()
    h = find_output(viewer, he_sample.name, "h")
    assert h is not None and h.data.any()
    assert find_output(viewer, he_sample.name, "autosam") is None
    assert "Preview" in seg.note.text()
    assert seg.last.preview  # re-segmenting after fine-tuning previews again


TILE = 64
ODD = (TILE, 2 * TILE, 2 * TILE, 3 * TILE)


def _slide() -> np.ndarray:
    plane, box = make_review_slide(TILE)
    assert box == ODD
    return plane


def test_review_list_goes_to_the_most_unsure_region_and_drops_accepted_ones(viewer, widget, qtbot, idle):
    viewer.add_image(_slide(), name="slide", scale=(2.0, 2.0))
    load_sam(widget, idle)
    widget.session.segmenter.set_model(threshold_model(0.5))
    review = widget.review_section
    review.tile, review.overlap = TILE, 0
    review.preview_check.setChecked(True)
    widget.segment_section.select("slide")
    click(qtbot, review.review_button)
    idle()
    assert review.list.count() == 9
    assert review.regions[0].region == ODD
    heat = viewer.layers["review scores"]
    assert heat.data.max() == pytest.approx(review.regions[0].score)
    assert tuple(heat.scale) == (2.0 * 8, 2.0 * 8)  # cells of 8² pixels over the 2×-scaled image
    click(qtbot, review.next_button)
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    centre = np.array([(ODD[0] + ODD[1]) / 2 - 0.5, (ODD[2] + ODD[3]) / 2 - 0.5]) * 2.0
    np.testing.assert_allclose(np.asarray(camera.center)[-2:], centre, atol=1e-6)
    assert find_output(viewer, "slide", "h") is not None  # a fast review fills the h(g(I)) layer
    assert "review region" in viewer.layers
    assert review.list.currentRow() == 0
    second = review.regions[1]
    widget.session.annotations_changed.emit()  # as accepting a correction does
    assert review.list.count() == 8 and review.regions[0] == second
    click(qtbot, review.next_button)
    assert review.current == second and review.list.currentRow() == 0


def test_review_opens_the_autosam_layer_for_painting(viewer, widget, qtbot, idle):
    viewer.add_image(_slide()[:128, :128], name="small")
    load_sam(widget, idle)
    review = widget.review_section
    review.tile, review.overlap = TILE, 0
    widget.segment_section.select("small")
    click(qtbot, review.review_button)
    idle()
    assert review.list.count() == 4 and all(r.disagreement is not None for r in review.regions)
    click(qtbot, review.next_button)
    layer = viewer.layers.selection.active
    assert layer is find_output(viewer, "small", "autosam") and layer.mode == "paint"
    entry = widget.correct_section.accept()
    assert entry is not None and review.list.count() == 3


def test_geojson_opens_as_labels_and_saves_back(viewer, tmp_path):
    _, labels = make_nuclei_image((64, 80), seed=2)
    path = write_geojson(tmp_path / "cells.geojson", labels_to_features(labels, classes={1: "Tumor"}))
    (tmp_path / "settings.json").write_text(json.dumps({"theme": "dark"}))
    [layer] = viewer.open(str(path), plugin="napari-autosam")
    assert layer.name == "cells objects" and layer.data.max() == labels.max()
    assert "Tumor" in list(layer.features["class"])
    with pytest.raises(ValueError):  # other JSON is not taken for GeoJSON
        viewer.open(str(tmp_path / "settings.json"), plugin="napari-autosam")
    out = tmp_path / "saved.geojson"
    layer.save(str(out), plugin="napari-autosam")
    features = json.loads(out.read_text())["features"]
    assert len(features) == labels.max()


def test_a_slide_is_reviewed_at_the_working_resolution(viewer, widget, tmp_path, qtbot, idle):
    from napari_autosam.data.synthetic_slides import write_svs

    image, _ = make_nuclei_image((256, 384), stain="he", rgb=True, seed=5)
    [layer] = viewer.open(str(write_svs(tmp_path / "biopsy.svs", image, downsamples=(2, 4))), plugin="napari-autosam")
    load_sam(widget, idle)
    seg, review = widget.segment_section, widget.review_section
    seg.select("biopsy", "image")
    seg.set_resolution({"level": 1})  # 0.5 µm/px: 128×192 working pixels
    review.tile, review.overlap = TILE, 0
    review.preview_check.setChecked(True)
    click(qtbot, review.review_button)
    idle()
    assert review.list.count() == 2 * 3
    assert viewer.layers["h(g(I))"].data.shape == (128, 192)
    heat = viewer.layers["review scores"]
    assert list(heat.scale) == pytest.approx([0.5 * 8, 0.5 * 8])  # 8-pixel cells of 0.5 µm pixels
    click(qtbot, review.next_button)
    y0, y1, x0, x1 = review.current.region
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    # the region's centre in µm over the slide: level-0 pixel edges (working × 2) times 0.25 µm
    centre = np.array([(y0 + y1) / 2, (x0 + x1) / 2]) * 2 * 0.25 - 0.125
    np.testing.assert_allclose(np.asarray(camera.center)[-2:], centre, atol=1e-6)


def test_labels_of_a_slide_save_as_geojson_in_level0_pixels(viewer, widget, tmp_path, qtbot, idle):
    from napari_autosam.data.synthetic_slides import write_svs

    image, _ = make_nuclei_image((256, 384), stain="he", rgb=True, seed=5)
    viewer.open(str(write_svs(tmp_path / "biopsy.svs", image, downsamples=(2, 4))), plugin="napari-autosam")
    load_sam(widget, idle)
    seg = widget.segment_section
    seg.select("biopsy", "image")
    seg.set_resolution({"level": 1})
    click(qtbot, seg.preview_button)
    idle()
    h = viewer.layers["h(g(I))"]
    h.data[:] = 0
    h.data[10:20, 30:50] = 1  # one object at level 1 (downsample 2)
    out = tmp_path / "h.geojson"
    h.save(str(out), plugin="napari-autosam")
    [feature] = json.loads(out.read_text())["features"]
    xs, ys = np.array(feature["geometry"]["coordinates"][0]).T
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (60, 100, 20, 40)
