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


def test_a_class_model_segments_class_ids_shown_in_the_classes_colours(viewer, widget, idle):
    from napari_autosam.class_sets import default_classes, label_colors
    from napari_autosam.data.synthetic_classes import make_class_dataset
    from napari_autosam.inference.class_labels import segment_classes
    from napari_autosam.progress import run
    from napari_autosam.training import TrainConfig
    from napari_autosam.training.engine import initial_model

    images, _ = make_class_dataset(1, (64, 80), seed=2)
    viewer.add_image(images[0], name="cells")
    seg = widget.segment_section
    seg.segment()  # loads the tiny SAM; a binary g first
    idle()
    assert set(np.unique(viewer.layers["AutoSAM"].data)) <= {0, 1}
    classes = default_classes(3)
    model = initial_model(TrainConfig(generator="hardnet_small", input_size=64, seed=3,
                                      classes=tuple(classes.to_metadata())))
    model.metadata["classes"] = classes.to_metadata()
    widget.session.set_model(model, "class g")
    assert seg.rerun()
    idle()
    expected = run(segment_classes(widget.session.segmenter, images[0]))  # the engine's class labels
    autosam, h = viewer.layers["AutoSAM"], viewer.layers["h(g(I))"]
    assert expected.labels.max() > 1, "the untrained class model draws more than one class here"
    np.testing.assert_array_equal(autosam.data, expected.labels)
    np.testing.assert_array_equal(h.data, expected.h_labels)
    colors = label_colors(classes)
    for layer in (autosam, h):
        for k in (1, 2, 3):
            assert np.allclose(layer.colormap.map(k), colors[k])
