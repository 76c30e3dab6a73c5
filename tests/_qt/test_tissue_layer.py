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
