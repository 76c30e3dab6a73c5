"""The whole loop through the real widgets: sample → segment → compare → edit → accept → fine-tune → rollback."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_autosam._qt.compare_section import grid_of
from napari_autosam.losses import dice

pytestmark = pytest.mark.gui


def click(qtbot, button):
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_whole_loop(viewer, widget, he_sample, qtbot, idle):
    seg, cmp, cor, fine = widget.segment_section, widget.compare_section, widget.correct_section, widget.finetune_section
    assert seg.image_combo.currentText() == "nuclei H&E"
    assert seg.scope_combo.currentData() == "image"

    # --- segment (loads the tiny SAM first, in the background)
    click(qtbot, seg.segment_button)
    idle()
    autosam, h = viewer.layers["AutoSAM"], viewer.layers["h(g(I))"]
    assert autosam.data.shape == h.data.shape == (384, 384)
    assert widget.session.model_label == "untrained (new)"
    assert "untrained" in seg.note.text()
    assert f"{(autosam.data > 0).mean():.0%} of the pixels" in seg.note.text()
    assert viewer.layers.selection.active is autosam  # ready for napari's paint tools

    # --- compare: four titled panes with one camera, no copies of the image
    names_before = [layer.name for layer in viewer.layers]
    click(qtbot, cmp.button)
    assert grid_of(viewer).enabled and grid_of(viewer).stride == 1
    layers = list(viewer.layers)
    diff = viewer.layers["disagreement"]
    for layer, position in ((h, (0, 0)), (autosam, (0, 1)), (diff, (1, 0)), (he_sample, (1, 1))):
        assert grid_of(viewer).position(layers.index(layer), layers) == position, layer.name
        assert layer.visible and layer.name_overlay.visible, f"the {layer.name} pane is titled"
    a, b = autosam.data > 0, h.data > 0
    np.testing.assert_array_equal(diff.data == 1, a & ~b)
    np.testing.assert_array_equal(diff.data == 2, b & ~a)
    assert f"{dice(a, b):.3f}" in cmp.result.text()
    assert [layer.name for layer in viewer.layers if layer.name not in names_before] == ["disagreement"]
    click(qtbot, cmp.button)  # leave
    assert not grid_of(viewer).enabled
    names = [layer.name for layer in viewer.layers]
    assert names.index("AutoSAM") > names.index("nuclei H&E")  # order restored: labels above the image
    assert he_sample.visible and autosam.visible and not autosam.name_overlay.visible
    assert viewer.layers.selection.active is autosam, "back to editing the AutoSAM layer"

    # --- edit with napari's own tools, then with a SAM point prompt
    autosam.paint((20, 20), 1)
    assert autosam.data[20, 20] == 1
    autosam.paint((300, 300), 0)
    assert autosam.data[300, 300] == 0
    click(qtbot, cor.positive_button)
    points = viewer.layers["SAM points"]
    assert points.mode == "add" and viewer.layers.selection.active is points
    before = autosam.data.max()
    points.add([200, 150])
    idle()
    assert autosam.data.max() == before + 1  # the object SAM drew got a new label
    assert np.count_nonzero(autosam.data == before + 1) > 0
    click(qtbot, cor.new_button)
    assert len(points.data) == 0

    # --- accept
    click(qtbot, cor.accept_button)
    [entry] = widget.session.annotations.entries()
    image, mask = widget.session.annotations.load(entry)
    np.testing.assert_array_equal(mask, autosam.data)
    np.testing.assert_array_equal(image, he_sample.data)
    assert "1 accepted correction" in cor.status.text()
    assert str(widget.session.annotations.root) in cor.status.text()

    # --- fine-tune: new version, swapped in, image segmented again
    click(qtbot, fine.train_button)
    idle()
    assert widget.session.model_label == "v0001"
    assert fine.last_result.version == "v0001" and not fine.last_result.cancelled
    assert fine.plot.points["loss"], "the live plot got the training loss"
    assert autosam.metadata["autosam"]["model"] == "v0001"  # re-segmented with the new version
    assert [fine.versions.item(i).data(Qt.ItemDataRole.UserRole) for i in range(fine.versions.count())] == ["v0001"]

    # a second round makes v0002, then roll back to v0001
    click(qtbot, fine.train_button)
    idle()
    assert widget.session.model_label == "v0002"
    fine.versions.setCurrentRow(0)
    click(qtbot, fine.use_button)
    idle()
    assert widget.session.model_label == "v0001"
    assert widget.session.model_store.active == "v0001"
    assert autosam.metadata["autosam"]["model"] == "v0001"
    assert "in use" in fine.versions.item(0).text() and "in use" not in fine.versions.item(1).text()
