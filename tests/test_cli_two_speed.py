"""`segment` on a slide with --tissue and --sam-on: glass skipped, h everywhere, SAM on a share, a tile table."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_autosam.cli import main
from napari_autosam.data.tissue_slides import write_tissue_svs
from napari_autosam.io.labels_zarr import LabelImage


@pytest.fixture(scope="module")
def svs(tmp_path_factory):
    path, _ = write_tissue_svs(tmp_path_factory.mktemp("slide") / "case.svs", 1024, tile=256, fraction=0.15, seed=2, mpp=2.0)  # 7 of 9 tiles hold tissue
    return path


def test_segment_slide_in_two_speeds(svs, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["segment", str(svs), "--out", str(out), "--sam", "tiny", "--mpp", "8", "--tile", "128",
                 "--overlap", "32", "--tissue", "auto", "--sam-on", "uncertain", "--sam-share", "0.25"])
    assert code == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "tissue " in line and "glass pieces skipped" in line and "case_tiles.csv" in line
    rows = list(csv.DictReader(open(out / "case_tiles.csv")))
    sources = [r["source"] for r in rows]
    assert "skipped" in sources and "sam" in sources and "h" in sources
    n_tissue = sum(s != "skipped" for s in sources)
    assert sources.count("sam") == int(np.ceil(0.25 * n_tissue))
    best = LabelImage.open(out / "case_autosam.ome.zarr")
    assert best.attributes["tiles"]["sam"] == sources.count("sam")
    for r in rows:  # level-0 boxes; labels at level 1 (downsample 4)
        if r["source"] == "skipped":
            x, y, w, h = (int(float(r[k])) // 4 for k in ("x", "y", "width", "height"))
            assert not best.read_region((y, y + h, x, x + w)).any()


def test_bad_tissue_file_is_one_line(svs, tmp_path, capsys):
    (tmp_path / "mask.png").write_bytes(b"nope")
    code = main(["segment", str(svs), "--out", str(tmp_path / "o"), "--sam", "tiny", "--mpp", "8",
                 "--tissue", str(tmp_path / "mask.png"), "--sam-on", "none"])
    assert code != 0
    err = capsys.readouterr().err
    assert "mask.png" in err and "Traceback" not in err


def test_geojson_of_a_two_speed_slide_says_which_objects_sam_made(svs, tmp_path, capsys):
    import json

    from shapely.geometry import shape

    out = tmp_path / "out"
    code = main(["segment", str(svs), "--out", str(out), "--sam", "tiny", "--mpp", "8", "--tile", "128",
                 "--overlap", "32", "--tissue", "auto", "--sam-on", "uncertain", "--sam-share", "0.5", "--geojson"])
    assert code == 0
    rows = list(csv.DictReader(open(out / "case_tiles.csv")))
    features = json.loads((out / "case_autosam.geojson").read_text())["features"]
    assert features and {f["properties"]["autosam_source"] for f in features} <= {"sam", "h"}
    for feature in features:  # the source of the tile (level-0 box) its representative point lies in
        point = shape(feature["geometry"]).representative_point()
        [tile] = [r for r in rows if float(r["x"]) <= point.x < float(r["x"]) + float(r["width"])
                  and float(r["y"]) <= point.y < float(r["y"]) + float(r["height"])]
        assert feature["properties"]["autosam_source"] == tile["source"]
