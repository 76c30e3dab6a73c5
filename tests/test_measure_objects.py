"""Per-object measurements: shapes with known answers, agreement with regionprops, whole vs tiled."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk, ellipse
from skimage.measure import regionprops_table

from napari_autosam.measure import measure_labels
from napari_autosam.measure.objects import measure_block
from napari_autosam.measure.tiled import Sources, measure_arrays, measure_tiled
from napari_autosam.progress import run

MPP = 0.5  # µm per pixel of the test images


@pytest.fixture(scope="module")
def shapes():
    """Four objects: disc r=40 px, square 60 px, ellipse 60×30 px (semi-axes), ring 40/20 px."""
    labels = np.zeros((400, 400), np.int32)
    labels[disk((80, 80), 40, shape=labels.shape)] = 1
    labels[50:110, 220:280] = 2
    labels[ellipse(250, 100, 30, 60, shape=labels.shape)] = 3
    labels[disk((280, 300), 40, shape=labels.shape)] = 4
    labels[disk((280, 300), 20, shape=labels.shape)] = 0
    return labels


def _row(table, label):
    return table.set_index("object_id").loc[label]


def test_known_shapes_in_micrometres(shapes):
    """Area within 1 %, perimeter within 5 %, diameter and axes within 1 % of the continuous shapes."""
    table = measure_labels(shapes, mpp=MPP).table
    disc, square, oval, ring = (_row(table, k) for k in (1, 2, 3, 4))
    um = MPP
    assert disc["area_um2"] == pytest.approx(np.pi * (40 * um) ** 2, rel=0.01)
    assert disc["perimeter_um"] == pytest.approx(2 * np.pi * 40 * um, rel=0.05)
    assert disc["equivalent_diameter_um"] == pytest.approx(80 * um, rel=0.01)
    assert disc["eccentricity"] < 0.05 and disc["solidity"] > 0.99 and disc["circularity"] > 0.9
    assert square["area_um2"] == pytest.approx(3600 * um**2)  # exact: 60×60 pixels
    assert square["perimeter_um"] == pytest.approx(4 * 60 * um, rel=0.03)
    assert square["solidity"] == pytest.approx(1.0)
    assert square["circularity"] == pytest.approx(np.pi / 4, rel=0.05)
    assert oval["major_axis_um"] == pytest.approx(120 * um, rel=0.01)
    assert oval["minor_axis_um"] == pytest.approx(60 * um, rel=0.01)
    assert oval["eccentricity"] == pytest.approx(np.sqrt(1 - 0.25), rel=0.01)
    assert ring["area_um2"] == pytest.approx(np.pi * (40**2 - 20**2) * um**2, rel=0.02)
    assert ring["solidity"] == pytest.approx(0.75, rel=0.02)  # the hole is a quarter of the hull
    assert ring["perimeter_um"] == pytest.approx(2 * np.pi * 60 * um, rel=0.05)  # both outlines
    assert disc["centroid_x_px"] == pytest.approx(80.5) and disc["centroid_y_px"] == pytest.approx(80.5)
    assert disc["centroid_x_um"] == pytest.approx(80.5 * um)


def test_geometry_matches_regionprops():
    """Area, centroid, perimeter, axes and eccentricity equal scikit-image's regionprops."""
    rng = np.random.default_rng(3)
    labels = np.zeros((300, 300), np.int32)
    for k in range(1, 60):
        rr, cc = ellipse(*rng.integers(0, 300, 2), rng.uniform(1, 20), rng.uniform(1, 20), shape=labels.shape,
                         rotation=rng.uniform(0, np.pi))
        labels[rr, cc] = k
    _, ours = measure_block(labels)
    ref = regionprops_table(labels, properties=("label", "area", "centroid", "perimeter", "axis_major_length",
                                                "axis_minor_length", "eccentricity"))
    np.testing.assert_array_equal(ours["label"], ref["label"])
    for theirs, mine in (("area", "area"), ("centroid-0", "centroid_y"), ("centroid-1", "centroid_x"),
                         ("perimeter", "perimeter"), ("axis_major_length", "major_axis"),
                         ("axis_minor_length", "minor_axis"), ("eccentricity", "eccentricity")):
        np.testing.assert_allclose(ours[mine], ref[theirs], rtol=1e-9, atol=1e-9, err_msg=mine)


def test_whole_and_tiled_give_the_same_table():
    """Tiles of 256 with objects across their borders (and one id in two places) give the whole image's table."""
    rng = np.random.default_rng(7)
    labels = np.zeros((700, 650), np.int32)
    for k in range(1, 200):
        rr, cc = ellipse(*rng.integers(0, 650, 2), rng.uniform(2, 40), rng.uniform(2, 40), shape=labels.shape,
                         rotation=rng.uniform(0, np.pi))
        labels[rr, cc] = k
    labels[250:262, 250:262] = 500  # across a corner of four tiles
    labels[10:14, 10:14] = labels[600:604, 600:604] = 501  # one id, two parts in different tiles
    image = rng.integers(0, 256, (700, 650, 3), dtype=np.uint8)
    probability = rng.random((700, 650), dtype=np.float32)
    arrays = {"labels": labels, "image": image, "probability": probability}
    whole = measure_arrays(arrays, "hed")
    tiled = run(measure_tiled(Sources(labels, image, "hed", probability), tile=256, workers=2)).columns
    crossing = sum(1 for k in np.unique(labels[255:257]) if k) + sum(1 for k in np.unique(labels[:, 255:257]) if k)
    assert crossing > 10
    assert set(whole) == set(tiled)
    np.testing.assert_array_equal(whole["label"], tiled["label"])
    for name in whole:
        np.testing.assert_allclose(tiled[name], whole[name], rtol=1e-9, atol=1e-9, err_msg=name)


def test_intensity_columns_of_known_colours():
    """H&E densities of a haematoxylin-blue object beat its eosin; grey images give channel means and SDs."""
    labels = np.zeros((40, 40), np.int32)
    labels[5:15, 5:15] = 1
    labels[20:30, 20:30] = 2
    rgb = np.full((40, 40, 3), 255, np.uint8)
    rgb[5:15, 5:15] = (60, 40, 140)  # purple-blue: haematoxylin
    rgb[20:30, 20:30] = (240, 120, 190)  # pink: eosin
    table = measure_labels(labels, rgb).table.set_index("object_id")
    assert table.loc[1, "hematoxylin_od_mean"] > table.loc[2, "hematoxylin_od_mean"]
    assert table.loc[2, "eosin_od_mean"] > table.loc[1, "eosin_od_mean"]
    assert table.loc[1, "hematoxylin_od_sd"] == pytest.approx(0.0, abs=1e-12)
    grey = np.zeros((40, 40), np.uint16)
    grey[5:15, 5:10], grey[5:15, 10:15] = 100, 300
    table = measure_labels(labels, grey).table.set_index("object_id")
    assert table.loc[1, "channel0_mean"] == pytest.approx(200) and table.loc[1, "channel0_sd"] == pytest.approx(100)


def test_no_objects_and_no_calibration():
    """Empty labels give an empty table; without µm/px the columns and the line say px."""
    result = measure_labels(np.zeros((50, 60), np.int32))
    assert len(result.table) == 0 and "area_px2" in result.table.columns
    assert result.summary_text.startswith("0 objects") and "px" in result.summary_text
    labels = np.zeros((50, 60), np.int32)
    labels[10:20, 10:20] = 3
    result = measure_labels(labels)
    assert {"area_px2", "perimeter_px"} <= set(result.table.columns)
    assert not any(c.endswith("_um") or c.endswith("_um2") for c in result.table.columns)
    assert "no µm/px" in result.summary_text


def test_label_thumbnail_keeps_every_object_of_its_cells():
    """The report's labels thumbnail holds the largest label of each step×step cell, across window edges."""
    rng = np.random.default_rng(0)
    labels = (rng.integers(1, 50, (1000, 900)) * (rng.random((1000, 900)) < 0.01)).astype(np.int32)
    result = run(measure_tiled(Sources(labels), tile=256, thumbnail_side=100))
    step = result.step
    assert step == 10
    expected = labels.reshape(100, step, 90, step).max(axis=(1, 3))
    np.testing.assert_array_equal(result.thumbnails["labels"], expected)


def test_convex_pixels_equal_the_hull_of_every_pixel_centre():
    """Solidity's hull from the row ends (after dropping non-vertices) equals shapely's hull of all pixel centres."""
    import shapely
    from skimage.draw import polygon

    from napari_autosam.measure.objects import _convex_pixels, group_pixels

    rng = np.random.default_rng(5)
    labels = np.zeros((600, 600), np.int32)
    for k in range(1, 120):
        if k % 3:
            rr, cc = ellipse(*rng.integers(0, 600, 2), rng.uniform(1, 25), rng.uniform(1, 25), shape=labels.shape,
                             rotation=rng.uniform(0, np.pi))
        else:  # concave and self-crossing polygons
            corners = rng.integers(0, 60, (6, 2)) + rng.integers(0, 540, 2)
            rr, cc = polygon(corners[:, 0], corners[:, 1], labels.shape)
        labels[rr, cc] = k
    labels[300:302, 10:60], labels[400:440, 500], labels[5, 5] = 999, 998, 997  # bars, a line, one pixel
    groups = group_pixels(labels)
    expected = []
    for start, count in zip(groups.starts, groups.counts):
        points = np.column_stack((groups.x[start : start + count], groups.y[start : start + count])).astype(float)
        hull = shapely.MultiPoint(points).convex_hull
        if hull.area == 0:
            expected.append(count)
            continue
        ring = np.asarray(hull.exterior.coords)
        on_boundary = np.gcd(*np.abs(np.diff(ring, axis=0)).astype(int).T).sum()
        expected.append(hull.area + on_boundary / 2 + 1)
    np.testing.assert_allclose(_convex_pixels(groups), expected, rtol=0, atol=1e-9)
