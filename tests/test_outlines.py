"""Pixel-edge outlines of label images: exact, valid, the same whatever the band, and corners handled."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
import zarr
from scipy import ndimage as ndi

from napari_autosam.io.outlines import label_outlines
from napari_autosam.io.polygons import rasterize


def _draw(outlines: dict, shape) -> np.ndarray:
    out = np.zeros(shape, np.int32)
    rasterize(list(outlines.values()), list(outlines), out)
    return out


def _check_exact(labels: np.ndarray, outlines: dict) -> None:
    assert sorted(outlines) == sorted(int(v) for v in np.unique(labels) if v)
    for value, geometry in outlines.items():
        assert shapely.is_valid(geometry), shapely.is_valid_reason(geometry)
        assert geometry.area == np.count_nonzero(labels == value)
        parts = shapely.get_parts(geometry)
        assert len(parts) == ndi.label(labels == value)[1]  # one polygon per 4-connected part
        for part in parts:  # exterior counter-clockwise, holes clockwise (x right, y up terms)
            assert shapely.is_ccw(part.exterior)
            assert not any(shapely.is_ccw(ring) for ring in part.interiors)
    np.testing.assert_array_equal(_draw(outlines, labels.shape), labels)


def _noise_labels(rng, shape, classes: int) -> np.ndarray:
    keep = rng.random(shape) < rng.uniform(0.2, 0.8)
    return (keep * rng.integers(1, classes + 1, shape)).astype(np.int32)


@pytest.mark.parametrize("seed", range(6))
def test_noise_labels_come_out_exact_in_every_band_size(seed):
    rng = np.random.default_rng(seed)
    labels = _noise_labels(rng, (37, 53), classes=1 + seed % 3)
    whole = label_outlines(labels)
    _check_exact(labels, whole)
    for band in (1, 2, 5, 36):
        banded = label_outlines(labels, band=band)
        assert sorted(banded) == sorted(whole)
        assert all(shapely.equals(banded[v], whole[v]) for v in whole)


def test_corners_holes_and_islands():
    labels = np.zeros((9, 9), np.int32)
    labels[1, 1] = labels[2, 2] = 1  # two pixels touching at a corner: two parts
    ring = np.ones((5, 5), np.int32)  # a ring of label 2 ...
    ring[1:4, 1:4] = 0
    ring[1, 1] = 1  # ... with a notch in its hole ...
    ring[2, 2] = 1  # ... and an island of its own label in the hole, touching the notch at a corner
    labels[3:8, 3:8] = ring * 2
    outlines = label_outlines(labels)
    _check_exact(labels, outlines)
    assert outlines[1].geom_type == "MultiPolygon" and len(outlines[1].geoms) == 2
    big, island = sorted(shapely.get_parts(outlines[2]), key=lambda part: -part.area)
    assert len(big.interiors) == 1 and island.area == 1 and big.interiors[0].contains(island.centroid) is False
    assert shapely.Polygon(big.interiors[0]).contains(island)


def test_ring_that_closes_through_a_diagonal_corner_keeps_its_hole():
    labels = np.array([[0, 1, 1, 1, 0],
                       [0, 1, 0, 1, 0],
                       [0, 0, 1, 1, 0],
                       [0, 0, 0, 0, 0]], np.int32)  # (1,1) and (2,2) meet at a corner; (1,2) is enclosed
    outlines = label_outlines(labels)
    _check_exact(labels, outlines)
    assert outlines[1].geom_type == "Polygon" and len(outlines[1].interiors) == 1


def test_ragged_region_with_many_holes_and_lazy_input(tmp_path):
    rng = np.random.default_rng(7)
    smooth = ndi.gaussian_filter(rng.random((600, 700)).astype(np.float32), 2)
    labels = (smooth > np.quantile(smooth, 0.4)).astype(np.uint16)  # one ragged mask riddled with holes
    labels[:50, :50] = 3  # and an object sharing edges with it
    store = zarr.open_array(tmp_path / "labels.zarr", mode="w", shape=labels.shape, chunks=(64, 700),
                            dtype=labels.dtype)
    store[:] = labels
    outlines = label_outlines(store, band=64)
    holes = sum(len(part.interiors) for part in shapely.get_parts(outlines[1]))
    assert holes > 100
    _check_exact(labels, outlines)


def test_empty_and_bad_input():
    assert label_outlines(np.zeros((5, 6), np.uint8)) == {}
    full = label_outlines(np.full((3, 4), 9, np.int64))
    assert list(full) == [9] and full[9].equals(shapely.box(0, 0, 4, 3))
    with pytest.raises(ValueError, match="2D"):
        label_outlines(np.zeros((2, 3, 4), np.int32))
    with pytest.raises(ValueError, match="integers"):
        label_outlines(np.zeros((3, 3), np.float32))


def test_scanline_fill_marks_the_pixel_centres_inside_any_polygon():
    from napari_autosam.io.polygons import fill_geometry

    rng = np.random.default_rng(11)
    for _ in range(40):
        angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 30)))
        radii = rng.uniform(3, 40) * rng.uniform(0.4, 1, len(angles))
        cx, cy = rng.uniform(-10, 70, 2)
        polygon = shapely.Polygon(np.c_[cx + radii * np.cos(angles), cy + radii * np.sin(angles)])
        geometry = shapely.make_valid(polygon.difference(shapely.Point(cx, cy).buffer(radii.min() / 2)))
        geometry = shapely.MultiPolygon([p for p in shapely.get_parts(geometry) if p.geom_type == "Polygon"])
        out = np.zeros((60, 70), np.uint8)
        origin = (int(rng.integers(-5, 5)), int(rng.integers(-5, 5)))
        count = fill_geometry(out, geometry, 1, origin=origin)
        ys, xs = np.mgrid[0:60, 0:70] + 0.5
        xs, ys = xs + origin[1], ys + origin[0]
        truth = shapely.contains_xy(geometry, xs, ys)
        on_edge = shapely.distance(geometry.boundary, shapely.points(xs, ys)) < 1e-9
        assert count == np.count_nonzero(out)
        np.testing.assert_array_equal((out > 0)[~on_edge], truth[~on_edge])
