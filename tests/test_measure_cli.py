"""``napari-autosam measure``: files in, table, summary, report and GeoJSON out; regions against a hand count."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_autosam.cli import main
from napari_autosam.io.labels_zarr import LabelImage, Placement
from napari_autosam.progress import run

MPP = 0.5


@pytest.fixture
def slide(tmp_path):
    """A 600×800 RGB TIFF at 0.5 µm/px (tissue on the left half) and its labels: a 10×10 grid of 8×8 squares."""
    image = np.full((600, 800, 3), 245, np.uint8)
    image[:, :400] = (200, 120, 170)
    labels = np.zeros((600, 800), np.int32)
    k = 0
    for y in range(20, 600, 60):
        for x in range(20, 800, 80):
            k += 1
            labels[y : y + 8, x : x + 8] = k
            image[y : y + 8, x : x + 8] = (70, 50, 150)
    tifffile.imwrite(tmp_path / "slide.tif", image, resolution=(1e4 / MPP, 1e4 / MPP), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "slide_instances.tif", labels)
    return tmp_path, labels


def _regions(path, polygons):
    features = [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                 "properties": {"objectType": "annotation", "name": name}} for name, ring in polygons]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_measure_writes_table_summary_report_and_geojson(slide, capsys):
    folder, labels = slide
    box = [[0, 0], [250, 0], [250, 250], [0, 250], [0, 0]]  # level-0 px: x 0..250, y 0..250
    regions = _regions(folder / "regions.geojson", [("corner", box)])
    code = main(["measure", str(folder / "slide_instances.tif"), "--image", str(folder / "slide.tif"),
                 "--regions", str(regions), "--out", str(folder / "slide_objects.csv"),
                 "--geojson", str(folder / "slide.geojson"), "--tile", "256"])
    assert code == 0
    line = capsys.readouterr().out
    table = pd.read_csv(folder / "slide_objects.csv")
    summary = pd.read_csv(folder / "slide_summary.csv")
    assert len(table) == 100 and table["area_um2"].eq(64 * MPP**2).all()
    assert table["hematoxylin_od_mean"].gt(table["eosin_od_mean"]).all()
    # by hand: squares start at x = 20, 100, 180 (<= 250 - 4) and y = 20, 80, 140, 200 → 3 × 4 centroids inside
    corner = summary[(summary.region == "corner") & (summary["class"] == "all")].iloc[0]
    assert corner["count"] == 12
    assert corner["region_area_mm2"] == pytest.approx(250 * 250 * MPP**2 / 1e6)
    assert corner["density_per_mm2"] == pytest.approx(12 / corner["region_area_mm2"])
    assert corner["area_fraction_pct"] == pytest.approx(100 * 12 * 64 / 250**2)
    assert corner["median_area_um2"] == pytest.approx(16.0)
    image_row = summary[summary.region == "image"].iloc[0]
    assert image_row["count"] == 100 and image_row["region_area_mm2"] == pytest.approx(600 * 800 * 0.25 / 1e6)
    tissue = summary[summary.region == "tissue"].iloc[0]
    assert tissue["count"] == 50  # the squares on the pink left half
    assert f"100 objects, {image_row['density_per_mm2']:.1f} per mm²" in line
    report = (folder / "slide_report.html").read_text()
    assert report.count("data:image/png;base64,") == 3 and "corner" in report
    features = json.loads((folder / "slide.geojson").read_text())["features"]
    assert len(features) == 100
    measured = features[0]["properties"]["measurements"]
    assert measured["Area µm^2"] == pytest.approx(16.0) and "Perimeter µm" in measured


def test_ome_zarr_labels_without_calibration_say_px(tmp_path, capsys):
    """OME-Zarr labels as segment writes them; no µm/px anywhere → px columns and a px summary line."""
    labels = np.zeros((300, 300), np.int32)
    labels[100:140, 100:140] = 7
    image = LabelImage.create(tmp_path / "x_instances.ome.zarr", labels.shape, np.int32, Placement())
    run(image.write_array(labels))
    assert main(["measure", str(tmp_path / "x_instances.ome.zarr"), "--out", str(tmp_path / "x.csv")]) == 0
    out = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "x.csv")
    assert table["area_px2"].tolist() == [1600] and "centroid_x_um" not in table.columns
    assert "no µm/px" in out and "per million px²" in out
    summary = pd.read_csv(tmp_path / "x_summary.csv")
    assert "density_per_mpx2" in summary.columns and "median_area_px2" in summary.columns


def test_class_mask_components_and_size_mismatch(slide, capsys):
    folder, labels = slide
    mask = np.zeros((600, 800), np.uint8)
    mask[10:20, 10:20] = 1
    mask[50:60, 50:60] = 1
    mask[100:130, 100:110] = 2
    tifffile.imwrite(folder / "slide_autosam.tif", mask)
    assert main(["measure", str(folder / "slide_autosam.tif"), "--out", str(folder / "m.csv"),
                 "--class-names", "nucleus,gland", "--mpp", "0.5"]) == 0
    table = pd.read_csv(folder / "m.csv")
    assert sorted(table["class"]) == ["gland", "nucleus", "nucleus"]
    capsys.readouterr()
    tifffile.imwrite(folder / "small.tif", labels[:300])
    code = main(["measure", str(folder / "small.tif"), "--image", str(folder / "slide.tif"),
                 "--out", str(folder / "s.csv")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "labels are 300×800 but the image slide.tif is 600×800" in err


def test_parquet_needs_pyarrow_or_is_written(slide, capsys):
    from napari_autosam.measure.outputs import parquet_available

    folder, _ = slide
    code = main(["measure", str(folder / "slide_instances.tif"), "--out", str(folder / "t.parquet")])
    if parquet_available():
        assert code == 0 and len(pd.read_parquet(folder / "t.parquet")) == 100
    else:
        assert code == 1 and "needs pyarrow" in capsys.readouterr().err
        assert not (folder / "t.parquet").exists()


def test_measure_outputs_writes_the_three_files_segment_measure_writes(slide):
    from napari_autosam.measure import measure_outputs

    folder, _ = slide
    written, line = run(measure_outputs(folder / "slide_instances.tif", folder / "slide.tif", folder / "out", "slide"))
    names = sorted(p.name for p in written)
    assert {"slide_objects.csv", "slide_summary.csv", "slide_report.html"} <= set(names)
    assert line.startswith("100 objects, ") and "per mm²" in line


def test_segment_measure_picks_the_instances_and_takes_a_working_image(slide):
    from napari_autosam.measure import labels_to_measure, measure_segmented

    folder, labels = slide
    assert labels_to_measure([folder / "a_h.tif", folder / "a_autosam.tif", folder / "a_instances.tif"]).name == \
        "a_instances.tif"
    assert labels_to_measure([folder / "a_h.tif", folder / "a_autosam.ome.zarr"]).name == "a_autosam.ome.zarr"
    image = tifffile.imread(folder / "slide.tif")
    written, line = run(measure_segmented([folder / "slide_instances.tif"], image, folder / "seg", "slide", mpp=1.0,
                                          downsample=2.0))
    table = pd.read_csv(folder / "seg" / "slide_objects.csv")
    assert len(table) == 100 and table["area_um2"].eq(64).all()  # 1 µm per label pixel
    assert table["centroid_x_px"].min() == pytest.approx(2 * (20 + 3.5 + 0.5))  # level 0 = 2 × working
    assert line.startswith("100 objects")


def test_a_big_class_mask_is_measured_at_a_pyramid_level(tmp_path, capsys, monkeypatch):
    """A class mask over the in-memory limit is split into regions at the first pyramid level under it, said once."""
    from napari_autosam.measure import inputs

    monkeypatch.setattr(inputs, "COMPONENTS_MAX_PIXELS", 600 * 600)
    mask = np.zeros((1000, 1000), np.uint8)
    mask[100:300, 100:300] = 1  # 200² px at level 0 → 100² at level 1 (500², under the limit)
    mask[600:700, 500:900] = 2
    image = LabelImage.create(tmp_path / "s_autosam.ome.zarr", mask.shape, np.uint8,
                              Placement((0.5, 0.5), (0.0, 0.0), "micrometer"))
    run(image.write_array(mask))
    assert main(["measure", str(tmp_path / "s_autosam.ome.zarr"), "--out", str(tmp_path / "m.csv"),
                 "--class-names", "tumour,stroma"]) == 0
    assert "measured at pyramid level 1" in capsys.readouterr().err
    table = pd.read_csv(tmp_path / "m.csv").set_index("class")
    assert table.loc["tumour", "area_um2"] == pytest.approx(200 * 200 * 0.25)
    assert table.loc["stroma", "area_um2"] == pytest.approx(100 * 400 * 0.25)
    assert table.loc["tumour", "centroid_x_px"] == pytest.approx(200, abs=2)
