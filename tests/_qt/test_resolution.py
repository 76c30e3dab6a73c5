"""The Resolution control of the Segment section on a real slide layer: levels, µm/px, the model's default."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_autosam.data.synthetic import make_nuclei_image
from napari_autosam.data.synthetic_slides import write_svs
from napari_autosam.models.checkpoint import ModelCheckpoint

pytestmark = pytest.mark.gui


@pytest.fixture
def slide_layer(viewer, tmp_path):
    image, _ = make_nuclei_image((256, 384), stain="he", rgb=True, seed=5)
    path = write_svs(tmp_path / "biopsy.svs", image, downsamples=(2, 4))
    [layer] = viewer.open(str(path), plugin="napari-autosam")
    return layer


def test_napari_opens_the_slide_as_a_multiscale_layer_in_micrometres(viewer, slide_layer, qtbot):
    from napari_autosam._qt import avoid_triton_llvm_clash

    viewer.window._qt_viewer.canvas.native.update()
    qtbot.wait(50)
    avoid_triton_llvm_clash()  # napari has drawn: keep torch from loading triton later in this process
    assert slide_layer.multiscale and slide_layer.rgb and list(slide_layer.scale) == [0.25, 0.25]
    assert slide_layer.data[0].shape == (256, 384, 3) and len(slide_layer.data) == 3
    assert slide_layer.metadata["vendor"] == "aperio" and slide_layer.metadata["objective_power"] == 40.0
    assert [str(u) for u in slide_layer.units] == ["micrometer", "micrometer"]


def test_resolution_control_segments_at_a_level_and_at_a_custom_mpp(viewer, widget, slide_layer, qtbot, idle):
    seg = widget.segment_section
    seg.select("biopsy", "image")
    labels = [seg.resolution_combo.itemText(i) for i in range(seg.resolution_combo.count())]
    assert labels[0].startswith("Level 0 — 0.25 µm/px") and labels[1].startswith("Level 1 — 0.5 µm/px")
    assert labels[-1] == "Custom µm/px" and len(labels) == 4
    # the user picks level 1 in the combo box
    seg.resolution_combo.setCurrentIndex(1)
    seg.resolution_combo.activated.emit(1)
    qtbot.mouseClick(seg.segment_button, Qt.MouseButton.LeftButton)
    idle()
    autosam = viewer.layers["AutoSAM"]
    assert autosam.data.shape == (128, 192)
    assert list(autosam.scale) == [0.5, 0.5] and list(autosam.translate) == [0.125, 0.125]  # over the slide
    assert "at 0.5 µm/px" in seg.note.text()
    assert seg.resolution_request() == {"level": 1}, "the user's choice survives the result layers being added"
    # a custom µm/px: read from level 1 (0.5) and resampled 1.5×
    seg.set_resolution({"mpp": 0.75})
    assert seg.resolution_request() == {"mpp": 0.75} and not seg.mpp_spin.isHidden()
    qtbot.mouseClick(seg.segment_button, Qt.MouseButton.LeftButton)
    idle()
    h = viewer.layers["h(g(I))"]
    assert h.data.shape == (85, 128) and list(h.scale) == pytest.approx([0.75, 0.75])
    assert np.isin(np.unique(h.data), [0, 1]).all()


def test_the_model_resolution_is_the_default_and_another_choice_is_said(viewer, widget, slide_layer, qtbot, idle):
    seg = widget.segment_section
    seg.select("biopsy", "image")
    seg.segment()  # loads the tiny SAM and the untrained model first
    idle()
    segmenter = widget.session.segmenter
    current = segmenter.checkpoint
    trained = ModelCheckpoint(current.prompt_generator, current.surrogate,
                              {**current.metadata, "untrained": False,
                               "resolution": {"level": 2, "downsample": 4.0, "mpp": 1.0}})
    segmenter.set_model(trained)
    seg.refresh_images()
    assert seg.resolution_request() == {"level": 2}  # the model's 1 µm/px is level 2 of this slide
    assert not seg.resolution_note.text()
    seg.resolution_combo.setCurrentIndex(0)
    seg.resolution_combo.activated.emit(0)
    assert "the model was trained at 1 µm/px" in seg.resolution_note.text()
    qtbot.mouseClick(seg.segment_button, Qt.MouseButton.LeftButton)
    idle()
    assert viewer.layers["AutoSAM"].data.shape == (256, 384)
    assert "trained at 1 µm/px" in seg.note.text()


def test_visible_region_of_a_slide_at_a_coarser_level(viewer, widget, slide_layer, qtbot, idle):
    seg = widget.segment_section
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.center = (20.0, 30.0)  # µm: the slide is 64 × 96 µm
    camera.zoom = 40
    qtbot.wait(50)
    seg.select("biopsy", "region")
    seg.set_resolution({"level": 1})
    qtbot.mouseClick(seg.segment_button, Qt.MouseButton.LeftButton)
    idle()
    y0, y1, x0, x1 = seg.last_region  # in working (level-1) pixels
    assert 0 <= y0 < y1 <= 128 and 0 <= x0 < x1 <= 192 and (y1 - y0) < 128
    assert y0 <= 40 <= y1 and x0 <= 60 <= x1  # the centre (20, 30) µm is pixel (40, 60) at 0.5 µm/px
    h = viewer.layers["h(g(I))"].data
    assert h.shape == (128, 192)
    outside = np.ones(h.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert not h[outside].any()
