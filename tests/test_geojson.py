"""QuPath GeoJSON both ways: exact round trips, QuPath's own files, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_autosam.data.synthetic import make_nuclei_image
from napari_autosam.io.geojson import (
    GeoJSONError,
    Placement,
    labels_to_features,
    looks_like_geojson,
    mask_to_features,
    parse_features,
    read_features,
    write_geojson,
)
from napari_autosam.io.geojson_labels import objects_to_labels, read_geojson_labels
from napari_autosam.io.polygons import rasterize
from napari_autosam.losses import dice_iou


def _tricky_labels() -> np.ndarray:
    """Synthetic nuclei (touching pairs) plus a ring with a hole holding another object, objects cut by
    every border, a diagonal-only object and two squares sharing an edge."""
    _, labels = make_nuclei_image((200, 240), seed=3, touching_fraction=0.6)
    labels = labels.copy()
    top = int(labels.max())
    labels[60:110, 150:200] = top + 1
    labels[75:95, 165:185] = 0  # a hole ...
    labels[80:90, 170:180] = top + 2  # ... with an object inside it
    labels[0:12, 0:20] = top + 3  # top-left corner
    labels[190:200, 100:130] = top + 4  # bottom border
    labels[30:50, 230:240] = top + 5  # right border
    labels[150, 10], labels[151, 11], labels[152, 12] = top + 6, top + 6, top + 6  # touches itself at corners only
    labels[120:130, 60:70], labels[120:130, 70:80] = top + 7, top + 8  # touching along an edge
    return labels


def _match_ious(truth: np.ndarray, found: np.ndarray) -> list[float]:
    """For every object of ``truth``: the IoU with the object of ``found`` covering most of it."""
    ious = []
    for label in np.unique(truth[truth > 0]):
        inside = found[truth == label]
        best = np.bincount(inside[inside > 0]).argmax() if np.any(inside > 0) else 0
        ious.append(dice_iou(truth == label, found == best)[1] if best else 0.0)
    return ious


@pytest.mark.parametrize("placement", [Placement(), Placement(4.0, (1000.0, 2500.0))])
def test_labels_to_geojson_to_labels_keeps_every_object(tmp_path, placement):
    labels = _tricky_labels()
    features = labels_to_features(labels, object_type="detection", placement=placement)
    assert len(features) == len(np.unique(labels)) - 1
    path = write_geojson(tmp_path / "objects.geojson", features)
    back = read_geojson_labels(path, labels.shape, placement=placement)
    assert back.messages == []
    ious = _match_ious(labels, back.instances)
    assert min(ious) >= 0.98
    np.testing.assert_array_equal(back.instances > 0, labels > 0)  # pixel-exact, holes included
    by_name = {f["properties"]["name"]: f["geometry"] for f in features}
    top = int(labels.max()) - 8
    ring = by_name[f"autosam {top + 1}"]
    assert ring["type"] == "Polygon" and len(ring["coordinates"]) == 2  # the hole is kept
    assert by_name[f"autosam {top + 6}"]["type"] == "MultiPolygon"
    properties = features[0]["properties"]
    assert properties["objectType"] == "detection"
    area = properties["measurements"]["Area px^2"]
    assert area == pytest.approx(np.count_nonzero(labels == 1) * placement.downsample**2)


def test_level0_coordinates_follow_the_working_resolution():
    labels = np.zeros((10, 10), np.int32)
    labels[2:4, 3:6] = 1
    feature = labels_to_features(labels, placement=Placement(2.0, (100.0, 40.0)), mpp=0.25)[0]
    xs, ys = np.array(feature["geometry"]["coordinates"][0]).T
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (106.0, 112.0, 44.0, 48.0)  # x right, y down
    assert feature["properties"]["measurements"]["Area µm^2"] == pytest.approx(6 * 4 * 0.25**2)


def test_semantic_masks_export_per_class_with_colours():
    mask = np.zeros((40, 40), np.uint8)
    mask[2:10, 2:10] = 1
    mask[20:30, 20:30] = 1
    mask[12:18, 30:38] = 2
    split = mask_to_features(mask, class_names=["Tumor", "Stroma"])
    assert [f["properties"]["classification"]["name"] for f in split] == ["Tumor", "Tumor", "Stroma"]
    assert all(f["properties"]["objectType"] == "annotation" for f in split)
    merged = mask_to_features(mask, class_names=["Tumor", "Stroma"], split=False)
    assert [f["geometry"]["type"] for f in merged] == ["MultiPolygon", "Polygon"]
    objects, _ = parse_features({"type": "FeatureCollection", "features": merged})
    back = objects_to_labels(objects, mask.shape, class_names=["Tumor", "Stroma"])
    np.testing.assert_array_equal(back.classes, mask)


def _ellipse(cx, cy, rx, ry, n=40):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ring = [[round(cx + rx * np.cos(a), 2), round(cy + ry * np.sin(a), 2)] for a in t]
    return ring + [ring[0]]


QUPATH_FILE = {
    "type": "FeatureCollection",
    "features": [
        {"type": "Feature", "id": "8a3f", "geometry": {"type": "Polygon", "coordinates": [
            [[10, 10], [90, 10], [90, 90], [10, 90], [10, 10]],
            [[30, 30], [60, 30], [60, 60], [30, 60], [30, 30]]]},
         "properties": {"objectType": "annotation", "classification": {"name": "Tumor", "color": [200, 0, 0]},
                        "isLocked": False}},
        {"type": "Feature", "geometry": {"type": "MultiPolygon", "coordinates": [
            [[[100, 10], [120, 10], [120, 30], [100, 30], [100, 10]]],
            [[[130, 10], [150, 10], [150, 30], [130, 30], [130, 10]]]]},
         "properties": {"object_type": "annotation", "classification": {"name": "Stroma", "colorRGB": -16744448}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [_ellipse(140, 70, 15, 9)]},
         "properties": {"objectType": "detection", "classification": {"name": "Nucleus", "color": [0, 0, 255]},
                        "measurements": {"Area px^2": 424.1}}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [
            [[40, 40], [50, 40], [50, 50], [40, 50], [40, 40]]]},
         "properties": {"objectType": "cell", "classification": {"name": "Nucleus", "color": [0, 0, 255]}}},
    ],
}


def test_a_qupath_export_imports_with_its_classes(tmp_path):
    path = tmp_path / "slide.geojson"
    path.write_text(json.dumps(QUPATH_FILE))
    assert looks_like_geojson(path)
    result = read_geojson_labels(path, (100, 160))
    assert result.messages == []
    assert result.class_names == ["Tumor", "Stroma", "Nucleus"]
    assert result.colors["Stroma"] == (0, 128, 0)  # QuPath ≤ 0.3 packed colour
    names = {k + 1: n for k, n in enumerate(result.class_names)}
    assert names[int(result.classes[20, 20])] == "Tumor"
    assert result.classes[45, 45] and names[int(result.classes[45, 45])] == "Nucleus"  # cell inside the hole
    assert result.instances[35, 35] == 0 and result.classes[35, 35] == 0  # the hole stays a hole
    assert np.count_nonzero(result.instances == result.instances[20, 20]) == 80 * 80 - 30 * 30
    stroma = result.instances[20, 110]
    assert stroma and result.instances[20, 140] == stroma  # one MultiPolygon, one object
    ellipse = result.instances[70, 140]
    assert abs(np.count_nonzero(result.instances == ellipse) - np.pi * 15 * 9) < 0.03 * np.pi * 15 * 9
    assert sorted(result.object_types) == ["annotation", "annotation", "detection", "detection"]
    only = read_geojson_labels(path, (100, 160), objects_of="detection")
    assert int(only.instances.max()) == 2 and only.instances[20, 20] == 0


@pytest.mark.parametrize("content, match", [
    ({"type": "Polygon", "coordinates": []}, "expected a GeoJSON FeatureCollection"),
    ([1, 2, 3], "expected a GeoJSON FeatureCollection"),
    ({"type": "FeatureCollection"}, "no 'features' list"),
    ("not json at all", "not JSON"),
])
def test_files_that_are_not_feature_collections_fail_in_one_line(tmp_path, content, match):
    path = tmp_path / "bad.geojson"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(GeoJSONError, match=match) as info:
        read_features(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not looks_like_geojson(path) or isinstance(content, dict)
    with pytest.raises(GeoJSONError, match="no such file"):
        read_features(tmp_path / "missing.geojson")


def test_bad_features_are_skipped_or_repaired_and_said_so():
    square = [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]
    data = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": None, "properties": {}},
        {"type": "Feature", "properties": {}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5, 5]}, "properties": {}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, "a"]]]}, "properties": {}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1e400, 0], [0, 5], [0, 0]]]}},
        "not a feature",
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [square]},
         "properties": ["odd"], "classification": {"name": "x", "color": ["r", "g", "b"]}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [  # a bow tie
            [[20, 20], [40, 40], [40, 20], [20, 40], [20, 20]]]}, "properties": {"objectType": "detection"}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[x + 45, y - 5] for x, y in square]]},
         "properties": {"classification": {"name": "Necrosis"}}},  # pokes out of the image
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[x + 500, y] for x, y in square]]},
         "properties": {}},  # wholly outside
    ]}
    objects, messages = parse_features(data, source="f.geojson")
    text = " | ".join(messages)
    assert "2 feature(s) had no geometry" in text
    assert "1 feature(s) are points or lines" in text
    assert "2 feature(s) had malformed coordinates" in text
    assert "1 feature(s) are not GeoJSON Feature objects" in text
    assert "repaired with make_valid" in text
    assert len(objects) == 4 and objects[1].geometry.is_valid
    result = objects_to_labels(objects, (50, 50), class_names=["Tumor"], source="f.geojson")
    text = " | ".join(result.messages)
    assert "1 object(s) reach outside the 50×50 image and were clipped" in text
    assert "1 object(s) lie wholly outside" in text
    assert "Necrosis are not among Tumor; added as class id(s) 2..2" in text
    assert result.class_names == ["Tumor", "Necrosis"]
    assert np.count_nonzero(result.instances == result.instances[2, 47]) == 5 * 5  # clipped to the image
    bowtie = result.instances[30, 25]
    assert bowtie and result.instances[25, 30] == 0  # the two triangles, not the crossing's gaps


def test_mask_regions_are_8_connected_and_numbered_as_skimage_does():
    from skimage.measure import label as connected

    rng = np.random.default_rng(5)
    mask = ((rng.random((48, 56)) < 0.35) * rng.integers(1, 3, (48, 56))).astype(np.uint8)
    features = mask_to_features(mask, class_names=["A", "B"])
    objects, _ = parse_features({"type": "FeatureCollection", "features": features})
    expected, start = np.zeros(mask.shape, np.int32), 0
    for value in (1, 2):  # skimage's regions per class, numbered on from the last class's
        parts = connected(mask == value, connectivity=2)
        expected[parts > 0] = parts[parts > 0] + start
        start += int(parts.max())
    assert len(features) == start
    assert [f["properties"]["name"] for f in features] == [f"autosam {i}" for i in range(1, start + 1)]
    for i, obj in enumerate(objects, start=1):  # each feature is exactly skimage's region i
        drawn = np.zeros(mask.shape, np.int32)
        rasterize([obj.geometry], [1], drawn)
        np.testing.assert_array_equal(drawn > 0, expected == i)


def test_a_lazy_0_255_mask_exports_as_its_0_1_twin(tmp_path):
    import zarr

    from napari_autosam.jobs.geojson_outputs import export_labels

    mask = np.zeros((300, 260), np.uint8)
    mask[10:90, 20:120] = 1
    mask[150:290, 100:250] = 1
    mask[40:60, 50:70] = 0  # a hole
    lazy = zarr.open_array(tmp_path / "mask.zarr", mode="w", shape=mask.shape, chunks=(64, 64), dtype=np.uint8)
    lazy[:] = mask * 255
    assert export_labels(lazy, tmp_path / "lazy.geojson", describe=lambda g: {"area_again": g.area}) == 2
    assert export_labels(mask, tmp_path / "twin.geojson") == 2
    lazy_features = read_features(tmp_path / "lazy.geojson")[0]
    twin_features = read_features(tmp_path / "twin.geojson")[0]
    assert [o.geometry.wkt for o in lazy_features] == [o.geometry.wkt for o in twin_features]
    raw = json.loads((tmp_path / "lazy.geojson").read_text())["features"]
    assert [f["properties"]["area_again"] for f in raw] == [80 * 100 - 20 * 20, 140 * 150]
