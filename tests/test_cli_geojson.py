"""GeoJSON from the command line, as training masks, and through the napari reader/writer functions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_autosam import _geojson_hooks as _geojson
from napari_autosam.cli import main
from napari_autosam.data.synthetic import make_nuclei_image
from napari_autosam.io.geojson import labels_to_features, write_geojson


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NAPARI_AUTOSAM_CACHE", str(tmp_path_factory.getbasetemp() / "cli-cache"))
    monkeypatch.setenv("NAPARI_AUTOSAM_CHECKPOINT_URL", "http://127.0.0.1:9/unreachable")


@pytest.fixture(scope="module")
def nuclei(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nuclei")
    image, labels = make_nuclei_image((96, 128), seed=5, stain="he")
    tifffile.imwrite(folder / "he.tif", image)
    tifffile.imwrite(folder / "he_labels.tif", labels)
    return folder, image, labels


def test_export_then_import_gives_the_labels_back(nuclei, tmp_path, capsys):
    folder, _, labels = nuclei
    out = tmp_path / "he.geojson"
    assert main(["export-geojson", str(folder / "he_labels.tif"), "--out", str(out), "--downsample", "2",
                 "--origin", "1000,0", "--classes", "Nucleus"]) == 0
    data = json.loads(out.read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == labels.max()
    first = data["features"][0]
    assert first["properties"]["objectType"] == "detection"
    assert first["properties"]["classification"]["name"] == "Nucleus"
    assert min(x for x, _ in first["geometry"]["coordinates"][0]) >= 1000
    assert f"{labels.max()} object(s)" in capsys.readouterr().out
    back = tmp_path / "back.tif"
    assert main(["import-geojson", str(out), "--like", str(folder / "he.tif"), "--out", str(back),
                 "--downsample", "2", "--origin", "1000,0"]) == 0
    instances = tifffile.imread(back)
    np.testing.assert_array_equal(instances > 0, labels > 0)
    assert tifffile.imread(tmp_path / "back_classes.tif").max() == 1
    assert json.loads((tmp_path / "back_classes.json").read_text())["class_names"] == ["Nucleus"]
    assert "class ids 1 Nucleus" in capsys.readouterr().out


def test_binary_masks_export_as_annotations(tmp_path):
    mask = np.zeros((40, 50), np.uint8)
    mask[5:15, 5:15] = 255
    mask[20:30, 30:45] = 255
    tifffile.imwrite(tmp_path / "m.tif", mask)
    assert main(["export-geojson", str(tmp_path / "m.tif"), "--out", str(tmp_path / "m.geojson")]) == 0
    features = json.loads((tmp_path / "m.geojson").read_text())["features"]
    assert [f["properties"]["objectType"] for f in features] == ["annotation", "annotation"]


def test_bad_geojson_and_clipping_are_one_line_each(nuclei, tmp_path, capsys):
    folder, _, _ = nuclei
    (tmp_path / "bad.geojson").write_text(json.dumps({"type": "Polygon", "coordinates": []}))
    assert main(["import-geojson", str(tmp_path / "bad.geojson"), "--like", str(folder / "he.tif"),
                 "--out", str(tmp_path / "x.tif")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "expected a GeoJSON FeatureCollection" in err and "Traceback" not in err
    assert not (tmp_path / "x.tif").exists()
    square = {"type": "Polygon", "coordinates": [[[120, 90], [140, 90], [140, 110], [120, 110], [120, 90]]]}
    (tmp_path / "edge.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": square, "properties": {"objectType": "annotation"}}]}))
    assert main(["import-geojson", str(tmp_path / "edge.geojson"), "--like", str(folder / "he.tif"),
                 "--out", str(tmp_path / "edge.tif")]) == 0
    assert "1 object(s) reach outside the 96×128 image and were clipped" in capsys.readouterr().err
    assert np.count_nonzero(tifffile.imread(tmp_path / "edge.tif")) == 6 * 8
    assert main(["export-geojson", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "m.geojson")]) == 1
    assert "no such file" in capsys.readouterr().err
    tifffile.imwrite(tmp_path / "probability.tif", np.full((8, 8), 0.5, np.float32))
    assert main(["export-geojson", str(tmp_path / "probability.tif"), "--out", str(tmp_path / "p.geojson")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "probability.tif: a label image or mask holds integers, got float32" in err


def test_segment_writes_geojson_too(nuclei, tmp_path):
    folder, _, _ = nuclei
    out = tmp_path / "out"
    assert main(["segment", str(folder / "he.tif"), "--out", str(out), "--sam", "tiny", "--device", "cpu",
                 "--mode", "instances", "--no-refine", "--geojson"]) == 0
    labels = tifffile.imread(out / "he_instances.tif")
    features = json.loads((out / "he_instances.geojson").read_text())["features"]
    assert len(features) == len(np.unique(labels[labels > 0]))


def test_training_masks_can_be_geojson(nuclei, tmp_path):
    from napari_autosam.training import load_samples

    folder, image, labels = nuclei
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    tifffile.imwrite(images / "he.tif", image)
    write_geojson(masks / "he.geojson", labels_to_features(labels))
    [sample] = load_samples(images, masks)
    np.testing.assert_array_equal(sample.mask, labels > 0)


def test_napari_reader_and_writer_round_trip(nuclei, tmp_path):
    _, _, labels = nuclei
    (tmp_path / "other.json").write_text(json.dumps({"settings": {"type": "Feature"}}))
    assert _geojson.napari_get_reader(str(tmp_path / "other.json")) is None  # not a FeatureCollection
    assert _geojson.napari_get_reader(str(tmp_path / "missing.geojson")) is None
    path = tmp_path / "objects.json"
    write_geojson(path, labels_to_features(labels, classes={1: "Tumor"}))
    [(data, kwargs, kind)] = _geojson.napari_get_reader(str(path))(str(path))
    assert kind == "labels" and kwargs["scale"] == (1.0, 1.0) and kwargs["translate"] == (0.0, 0.0)
    grown = np.zeros(np.maximum(data.shape, labels.shape), labels.dtype)  # the layer ends at the last object
    grown[: data.shape[0], : data.shape[1]] = data
    np.testing.assert_array_equal(grown[: labels.shape[0], : labels.shape[1]] > 0, labels > 0)
    assert kwargs["features"]["class"].count("Tumor") == 1
    written = _geojson.write_labels_geojson(str(tmp_path / "again"), data, kwargs)
    assert written == [str(tmp_path / "again.geojson")]
    features = json.loads((tmp_path / "again.geojson").read_text())["features"]
    assert len(features) == labels.max()
    assert sum(f["properties"].get("classification", {}).get("name") == "Tumor" for f in features) == 1
    scale, translate = _geojson.layer_transform(_geojson.placement_of((4, 4), (101.5, 51.5)))
    assert scale == (4.0, 4.0) and translate == (101.5, 51.5)


def test_big_images_are_rasterised_tile_by_tile_on_disk(nuclei, tmp_path, monkeypatch):
    from napari_autosam.cli import geojson_command as cli_geojson
    from napari_autosam.io import polygons

    folder, _, labels = nuclei
    path = write_geojson(tmp_path / "he.geojson", labels_to_features(labels, classes={1: "Nucleus"}))
    monkeypatch.setattr(cli_geojson, "IN_MEMORY_PIXELS", 100)  # as if the image were a slide
    monkeypatch.setattr(polygons.rasterize, "__kwdefaults__", {"tile": 32})  # 32² tiles
    out = tmp_path / "big.tif"
    assert main(["import-geojson", str(path), "--like", str(folder / "he.tif"), "--out", str(out)]) == 0
    np.testing.assert_array_equal(tifffile.imread(out) > 0, labels > 0)
    assert tifffile.TiffFile(out).pages[0].is_tiled  # written tile by tile from the zarr arrays
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # the scratch store is gone


def test_slides_at_a_working_resolution_map_to_level0(tmp_path):
    from napari_autosam.data.synthetic_slides import pattern, write_svs

    svs = write_svs(tmp_path / "biopsy.svs", pattern(512, 768, seed=1), downsamples=(4, 16), mpp=0.25)
    labels = np.zeros((128, 192), np.int32)  # level 1 (downsample 4)
    labels[10:30, 40:60], labels[100:128, 150:192] = 1, 2
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    out = tmp_path / "objects.geojson"
    assert main(["export-geojson", str(tmp_path / "labels.tif"), "--out", str(out), "--like", str(svs),
                 "--level", "1"]) == 0
    first = json.loads(out.read_text())["features"][0]
    xs, ys = np.array(first["geometry"]["coordinates"][0]).T
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (160, 240, 40, 120)  # level-0 pixels
    assert first["properties"]["measurements"]["Area µm^2"] == pytest.approx(400 * 16 * 0.25**2)
    back = tmp_path / "back.tif"
    assert main(["import-geojson", str(out), "--like", str(svs), "--level", "1", "--out", str(back)]) == 0
    np.testing.assert_array_equal(tifffile.imread(back) > 0, labels > 0)


def test_preview_into_ome_zarr_with_geojson(nuclei, tmp_path, capsys):
    from napari_autosam.io.labels_zarr import LabelImage

    folder, _, _ = nuclei
    out = tmp_path / "out"
    assert main(["segment", str(folder / "he.tif"), "--out", str(out), "--sam", "tiny", "--device", "cpu",
                 "--format", "ome-zarr", "--preview", "--geojson"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["he_h.geojson", "he_h.ome.zarr"]
    assert "(preview: h only)" in capsys.readouterr().out
    mask = LabelImage.open(out / "he_h.ome.zarr").read_region((0, 96, 0, 128))
    features = json.loads((out / "he_h.geojson").read_text())["features"]
    from skimage.measure import label

    assert len(features) == label(mask > 0, connectivity=2).max()
