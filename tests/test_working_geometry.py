"""Layer transforms and the model-resolution preselection the widget takes from io/working.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_autosam.inference.tiling import REVIEW_OVERLAP, REVIEW_TILE, review_tile
from napari_autosam.io.pyramid import Slide
from napari_autosam.io.working import box_edges, box_transform, cell_transform, preferred_request


def test_box_edges_are_half_a_pixel_out_and_follow_the_layer_transform():
    edges = box_edges((10, 20, 30, 50), scale=(2.0, 4.0), translate=(1.0, -3.0))
    np.testing.assert_allclose(edges, [[9.5 * 2 + 1, 29.5 * 4 - 3], [19.5 * 2 + 1, 49.5 * 4 - 3]])
    np.testing.assert_allclose(box_edges((0, 1, 0, 1), (1, 1), (0, 0)), [[-0.5, -0.5], [0.5, 0.5]])


def test_a_cut_out_box_lands_where_it_was_and_cells_cover_their_pixels():
    where = box_transform((8, 16, 4, 12), scale=(2.0, 3.0), translate=(10.0, 20.0))
    assert where == {"scale": (2.0, 3.0), "translate": (26.0, 32.0)}
    coarse = cell_transform([1.0, 2.0, 4.0], [0.0, 5.0, 0.0], 8)
    assert coarse == {"scale": [1.0, 16.0, 32.0], "translate": [0.0, 5.0 + 3.5 * 2.0, 3.5 * 4.0]}


def test_one_review_tile_for_every_front_end():
    import inspect

    from napari_autosam.cli import review_command as cli_review
    from napari_autosam.inference.review_scores import review

    assert review_tile((REVIEW_TILE, REVIEW_TILE)) is None and review_tile((3, REVIEW_TILE + 1, 9)) == REVIEW_TILE
    assert review_tile((100, 100), 64) == 64
    assert (cli_review.TILE, cli_review.OVERLAP) == (REVIEW_TILE, REVIEW_OVERLAP) == (1024, 128)
    defaults = inspect.signature(review).parameters
    assert (defaults["tile"].default, defaults["overlap"].default) == (REVIEW_TILE, REVIEW_OVERLAP)


def _slide(mpp):
    levels = [np.zeros((16, 16), np.uint8), np.zeros((8, 8), np.uint8), np.zeros((4, 4), np.uint8)]
    return Slide(Path("s.tif"), levels, [1.0, 2.0, 4.0], mpp, None, "generic-tiff", "tifffile")


def test_a_models_resolution_preselects_the_level_stored_at_it():
    calibrated, plain = _slide((0.25, 0.25)), _slide(None)
    assert preferred_request(calibrated, {"mpp": 0.5, "downsample": 2.0}) == {"level": 1}
    assert preferred_request(calibrated, {"mpp": 0.7, "downsample": 2.8}) == {"mpp": 0.7}
    assert preferred_request(plain, {"mpp": 0.5, "downsample": 4.0}) == {"level": 2}
    assert preferred_request(plain, {"downsample": 3.0}) == {"level": 0}
    assert preferred_request(calibrated, None) == {} and preferred_request(plain, {"level": 1}) == {}
