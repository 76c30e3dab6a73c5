"""The measurement table: segment, measure, sort, filter, select a row → the viewer centres on that object."""

from __future__ import annotations

import numpy as np
import pytest
from napari.utils.colormaps import DirectLabelColormap
from qtpy.QtCore import Qt
from skimage.measure import regionprops

from napari_autosam._qt.layers import find_output
from napari_autosam._qt.measure_table import HIGHLIGHT_LAYER, camera

pytestmark = pytest.mark.gui


def click(qtbot, button):
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_table_row_centres_the_viewer_on_its_object(viewer, widget, he_sample, qtbot, idle):
    seg, table = widget.segment_section, widget.measure_section
    seg.select(he_sample.name, "image")
    click(qtbot, seg.segment_button)
    idle()
    mask = find_output(viewer, he_sample.name, "autosam")
    mask.data[20:40, 30:60] = 1  # a correction: one object surely there, whatever the untrained model found
    mask.data[100:104, 200:204] = 1
    click(qtbot, table.measure_button)
    idle()
    frame = table.result.table
    assert len(frame) >= 2 and table.model.rowCount() == len(frame)
    assert list(table.layer.features["index"]) == list(frame["object_id"])  # the layer's features hold the table
    area = next(c for c in frame.columns if c.startswith("area_"))

    table.model.sort(list(table.model.frame.columns).index(area), Qt.SortOrder.DescendingOrder)
    shown = table.model.frame[area].to_numpy()
    assert (np.diff(shown) <= 0).all()
    table.filter_edit.setText(f"{area} >= 16")
    table.apply_filter()
    assert table.model.rowCount() == int((frame[area] >= 16).sum())

    table.select_row(table.model.rowCount() - 1)  # the smallest object left: the 4×4 square, or a smaller one
    row = table.model.frame.iloc[table.model.rowCount() - 1]
    objects = np.asarray(table.layer.data)  # the mask's connected regions, one label each
    prop = next(p for p in regionprops(objects) if p.label == int(row["object_id"]))
    centre = np.asarray(table.layer.world_to_data(camera(viewer).center))[-2:]
    np.testing.assert_allclose(centre, prop.centroid, atol=1e-6)
    assert HIGHLIGHT_LAYER in viewer.layers and len(viewer.layers[HIGHLIGHT_LAYER].data) == 1

    table.colour_combo.setCurrentText(area)
    assert isinstance(table.layer.colormap, DirectLabelColormap)
    assert table.histogram.pixmap() is not None and not table.histogram.pixmap().isNull()

    before = table.result
    widget.correct_section.accept()  # an accepted correction measures again
    idle()
    assert table.result is not before and len(table.result.table) == len(frame)

