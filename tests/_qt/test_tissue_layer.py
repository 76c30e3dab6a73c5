"""The editable tissue layer over a slide opened in napari."""

from __future__ import annotations

import numpy as np
import pytest

from napari_autosam._qt.tissue_layer import add_tissue_layer, tissue_of
from napari_autosam._reader import read_image_layers
from napari_autosam.data.tissue_slides import write_tissue_svs

pytestmark = pytest.mark.gui


def test_tissue_layer_over_a_slide_can_be_edited(make_napari_viewer, tmp_path):
    path, _ = write_tissue_svs(tmp_path / "case.svs", 4096, tile=256, fraction=0.35, seed=1)
    viewer = make_napari_viewer()
    (data, kwargs, _), = read_image_layers(path)
    image = viewer.add_image(data, **kwargs)
    layer = add_tissue_layer(viewer, image)
    assert layer.name == "tissue" and layer.data.dtype == np.uint8
    # the mask lies over the slide: its extent in µm matches the image's
    assert np.allclose(np.asarray(layer.data.shape) * layer.scale, np.asarray(image.data[0].shape[:2]) * image.scale,
                       rtol=0.02)
    detected = tissue_of(layer)
    assert detected.kind == "brightfield" and 0.3 < detected.fraction < 0.6
    layer.data = np.zeros_like(layer.data)  # the user erases everything but one block
    layer.data[:8, :8] = 1
    edited = tissue_of(layer)
    assert edited.fraction == pytest.approx(64 / layer.data.size)
    assert edited.box_fraction((0, 100, 0, 100)) == 1.0 and edited.box_fraction((3000, 4000, 3000, 4000)) == 0.0
    assert add_tissue_layer(viewer, image) is layer  # detecting again refreshes the same layer
    assert tissue_of(image) is None


def test_segment_on_a_slide_works_on_the_edited_tissue_only_and_fills_in(viewer, widget, qtbot, idle, tmp_path,
                                                                          monkeypatch):
    """Find tissue → the user keeps one corner → Segment: two speeds on the tissue tiles only, glass left 0,
    the labels shown while they fill in (before the run ends), and the note says what got SAM, h and nothing."""
    import csv

    from qtpy.QtCore import Qt

    from napari_autosam.io import labels_zarr
    from napari_autosam.io.labels_zarr import LabelImage

    monkeypatch.setattr(labels_zarr, "ON_DISK_ABOVE", 1000 * 1000)  # this 3072² slide counts as big
    path, _ = write_tissue_svs(tmp_path / "case.svs", 3072, tile=256, fraction=0.35, seed=1)
    [image] = viewer.open(str(path), plugin="napari-autosam")
    seg = widget.segment_section
    seg.select(image.name, "image")
    qtbot.mouseClick(seg.tissue_button, Qt.MouseButton.LeftButton)
    idle()
    layer = viewer.layers["tissue"]
    assert "Tissue:" in seg.note.text()
    block = 12  # mask cells kept: a corner of the slide
    edited = np.zeros_like(layer.data)
    edited[:block, :block] = 1
    layer.data = edited
    reach = block * tissue_of(layer).downsample[0]  # level-0 pixels covered by the kept corner

    order = []
    viewer.layers.events.inserted.connect(lambda event: order.append(f"layer {event.value.name}"))
    seg.runner.finished.connect(lambda *args: order.append("finished"))
    qtbot.mouseClick(seg.segment_button, Qt.MouseButton.LeftButton)
    idle(300)
    autosam = viewer.layers["AutoSAM"]
    assert order.index("layer AutoSAM") < order.index("finished"), order  # shown while it filled in
    folder = LabelImage.open(autosam.metadata["autosam"]["path"]).path.parent
    rows = list(csv.DictReader(open(next(folder.glob("*_tiles.csv")), encoding="utf-8")))
    worked = [r for r in rows if r["source"] != "skipped"]
    assert 1 <= len(worked) < len(rows) and any(r["source"] == "sam" for r in worked)
    assert all(float(r["x"]) < reach and float(r["y"]) < reach for r in worked), worked
    labels = np.asarray(autosam.data[0])
    for r in rows:
        if r["source"] == "skipped":  # glass (here: tissue the user erased) is never segmented
            x, y, w, h = (int(float(r[k])) for k in ("x", "y", "width", "height"))
            assert not labels[y:y + h, x:x + w].any()
    note = seg.note.text()
    assert "glass pieces skipped" in note and f"SAM on the {sum(r['source'] == 'sam' for r in rows)}" in note
