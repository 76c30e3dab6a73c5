"""Sample data: made by the project's own generator, each image with its mask."""

from __future__ import annotations

import numpy as np
import pytest

from napari_autosam import _sample_data


@pytest.mark.parametrize(
    "func, ndim, rgb",
    [(_sample_data.nuclei_he, 2, True), (_sample_data.nuclei_fluorescence, 2, False), (_sample_data.nuclei_stack, 3, False)],
)
def test_image_with_matching_mask(func, ndim, rgb):
    (image, image_kw, image_kind), (labels, labels_kw, labels_kind) = func()
    assert (image_kind, labels_kind) == ("image", "labels")
    assert image_kw["rgb"] is rgb
    assert labels.ndim == ndim and image.shape[:ndim] == labels.shape
    assert labels.max() >= 10, "a sample should hold many nuclei"
    assert 0.05 < (labels > 0).mean() < 0.6
    assert "ground truth" in labels_kw["name"] and labels_kw["name"] not in ("AutoSAM", "h(g(I))", "instances")


def test_nuclei_are_brighter_or_darker_than_background():
    (image, _, _), (labels, _, _) = _sample_data.nuclei_fluorescence()
    assert image[labels > 0].mean() > 1.5 * image[labels == 0].mean()
    (he, _, _), (he_labels, _, _) = _sample_data.nuclei_he()
    assert he[he_labels > 0].mean() < he[he_labels == 0].mean()  # hematoxylin absorbs


def test_deterministic():
    a = _sample_data.nuclei_stack()
    b = _sample_data.nuclei_stack()
    np.testing.assert_array_equal(a[0][0], b[0][0])
    np.testing.assert_array_equal(a[1][0], b[1][0])
