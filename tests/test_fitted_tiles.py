"""Tiles fitted to a slide's tissue: they cover every tissue pixel with fewer windows than the regular grid."""

from __future__ import annotations

import numpy as np
import pytest

from napari_autosam.data.tissue_slides import tissue_shape
from napari_autosam.inference.tiling import fitted_tiles, segmentation_tiles, stretched


def _check_layout(shape, keep, scale, tile, overlap):
    """The cores partition the plane, every kept mask pixel is in a kept core, windows are sound."""
    tiles, kept = fitted_tiles(shape, keep, scale, tile, overlap)
    painted = np.zeros(shape, np.int16)
    covered = np.zeros(shape, bool)
    for t, k in zip(tiles, kept):
        y0, y1, x0, x1 = t.core
        painted[y0:y1, x0:x1] += 1
        covered[y0:y1, x0:x1] |= k
        if k:
            wy0, wy1, wx0, wx1 = t.window
            assert 0 <= wy0 <= y0 < y1 <= wy1 <= shape[0] and 0 <= wx0 <= x0 < x1 <= wx1 <= shape[1]
            for side, length in ((wy1 - wy0, shape[0]), (wx1 - wx0, shape[1])):
                assert min(tile, length) <= side <= stretched(tile) + 2  # SAM's scale kept; the stretch, give or take rounding
    assert (painted == 1).all()
    sy, sx = scale  # plane pixel (y, x) lies in mask pixel (y // sy, x // sx)
    need = keep[(np.arange(shape[0]) // sy).astype(int)][:, (np.arange(shape[1]) // sx).astype(int)]
    assert covered[need].all()
    return tiles, kept


def _grid_count(shape, keep, scale, tile, overlap):
    count = 0
    for t in segmentation_tiles(shape, tile, overlap):
        y0, y1, x0, x1 = t.core
        block = keep[int(y0 // scale[0]) : int(np.ceil(y1 / scale[0])), int(x0 // scale[1]) : int(np.ceil(x1 / scale[1]))]
        count += bool(block.any())
    return count


def test_an_off_grid_square_of_tissue_takes_four_windows_not_nine():
    shape, scale = (5000, 5000), (10.0, 10.0)
    keep = np.zeros((500, 500), bool)
    keep[70:220, 70:220] = True  # 1500² px of tissue from (700, 700): three grid tiles each way
    _, kept = _check_layout(shape, keep, scale, 1024, 64)
    assert _grid_count(shape, keep, scale, 1024, 64) == 9 and sum(kept) == 4


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lobes_of_tissue_take_fewer_windows_than_the_grid(seed):
    shape, scale = (8000, 8000), (16.0, 16.0)
    keep = tissue_shape(500, 500, fraction=0.4, seed=seed)
    _, kept = _check_layout(shape, keep, scale, 1024, 64)
    assert sum(kept) < _grid_count(shape, keep, scale, 1024, 64)


@pytest.mark.parametrize("shape, scale", [((700, 900), (7.0, 9.0)), ((3000, 2100), (33.3, 12.5)), ((2500, 4100), (4.0, 4.0))])
def test_odd_sizes_and_scales_still_partition_the_plane(shape, scale):
    rng = np.random.default_rng(5)
    keep = rng.random((int(np.ceil(shape[0] / scale[0])), int(np.ceil(shape[1] / scale[1])))) > 0.97
    _check_layout(shape, keep, scale, 512, 32)


def test_no_tissue_gives_only_glass_pieces():
    tiles, kept = fitted_tiles((4000, 3000), np.zeros((40, 30), bool), (100.0, 100.0), 1024, 64)
    assert not any(kept) and sum((t.core[1] - t.core[0]) * (t.core[3] - t.core[2]) for t in tiles) == 4000 * 3000
