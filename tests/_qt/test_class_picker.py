"""The class picker: load a classes file, paint a class, class colours on the AutoSAM layer."""

from __future__ import annotations

import numpy as np

from napari_autosam._qt.layers import META_KEY


def test_class_picker_sets_the_painted_label_and_the_colours(viewer, widget, tmp_path):
    picker = widget.class_picker
    assert [picker.combo.itemText(i) for i in range(picker.combo.count())] == ["foreground"]
    viewer.add_image(np.zeros((32, 32), np.uint8), name="img")
    layer = viewer.add_labels(np.zeros((32, 32), np.uint8), name="AutoSAM",
                              metadata={META_KEY: {"image": "img", "role": "autosam"}})
    path = tmp_path / "classes.csv"
    path.write_text("1,Tumor,#ff0000\n2,Stroma,#0000ff\n")
    assert picker.load(str(path))
    assert [picker.combo.itemText(i) for i in range(picker.combo.count())] == ["1: Tumor", "2: Stroma"]
    assert widget.session.train_settings["classes"][1]["name"] == "Stroma"  # the next fine-tuning's classes
    viewer.layers.selection.active = layer
    picker.combo.setCurrentIndex(1)
    assert layer.selected_label == 2
    assert np.allclose(layer.colormap.map(2)[..., :3], [0, 0, 1])
    assert not picker.load(str(tmp_path / "missing.csv"))  # one notification, nothing changed
    assert picker.combo.count() == 2
