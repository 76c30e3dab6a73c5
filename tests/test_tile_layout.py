"""The one auto-tiling rule and the tile layout with the fewest encoder passes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_autosam.inference.tiling import (
    AUTO_TILE,
    AUTO_TILE_ABOVE,
    DEFAULT_OVERLAP,
    auto_tile,
    axis_spans,
    passes_per_plane,
    segmentation_tiles,
    stretched,
    tile_grid,
)


def test_one_auto_tiling_rule_for_gui_cli_and_api():
    assert auto_tile((AUTO_TILE_ABOVE, AUTO_TILE_ABOVE)) is None
    assert auto_tile((3, AUTO_TILE_ABOVE + 1, 10)) == AUTO_TILE  # the last two axes are the plane
    from napari_autosam.jobs import segment as jobs_segment
    from napari_autosam.jobs.options import SegmentOptions

    assert jobs_segment.auto_tile is auto_tile and SegmentOptions().overlap == DEFAULT_OVERLAP


@pytest.mark.parametrize(("size", "old", "new"), [(2048, 9, 4), (4096, 25, 16), (16384, 361, 256)])
def test_the_layout_saves_encoder_passes(size, old, new):
    assert len(tile_grid((size, size), 1024, 128)) == old  # the APIs' old layout is unchanged
    assert passes_per_plane((size, size), 1024, 64) == new
    assert passes_per_plane((size, size)) == (new if size > AUTO_TILE_ABOVE else 1)


@pytest.mark.parametrize("length", [1089, 2048, 3000, 4096, 5000, 16384])
@pytest.mark.parametrize("overlap", [0, 32, 64, 128])
def test_grown_windows_keep_the_overlap_and_cover_the_axis(length, overlap):
    spans = axis_spans(length, 1024, overlap, max_tile=stretched(1024))
    assert spans[0].start == 0 and spans[-1].stop == length
    for a, b in zip(spans, spans[1:]):
        assert a.stop - b.start >= overlap and a.overlap_after == b.overlap_before == a.stop - b.start
        assert a.core_stop == b.core_start
    sizes = {s.stop - s.start for s in spans}
    assert len(sizes) == 1 and 1024 <= sizes.pop() <= 1088
    # never more windows than the plain layout
    assert len(spans) <= len(axis_spans(length, 1024, overlap))


def test_grown_tiles_blend_to_one_and_cores_partition_the_plane():
    shape = (2100, 3000)
    tiles = segmentation_tiles(shape, 1024, DEFAULT_OVERLAP)
    total, owners = np.zeros(shape), np.zeros(shape, int)
    for t in tiles:
        total[t.slices] += t.weight()
        y0, y1, x0, x1 = t.core
        owners[y0:y1, x0:x1] += 1
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert (owners == 1).all()
    assert len(segmentation_tiles(shape, None)) == 1 and segmentation_tiles(shape, None)[0].window == (0, 2100, 0, 3000)
