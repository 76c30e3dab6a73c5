"""``train --images`` on slides far over 100 megapixels with QuPath GeoJSON beside them reads only what was annotated."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_autosam.cli import main
from napari_autosam.data.synthetic_slides import write_big_svs
from napari_autosam.io import slides as slides_module
from napari_autosam.io.geojson import read_features
from napari_autosam.models.checkpoint import read_metadata
from napari_autosam.training.annotated_regions import MARGIN, annotated_boxes

FAST = ["--sam", "tiny", "--epochs", "1", "--h-epochs", "1", "--min-steps", "0", "--input-size", "64",
        "--batch-size", "2", "--variants", "identity", "--device", "cpu", "--time-limit", "0"]
SIZE = 10240  # 105 megapixels: refused as "too big to train on whole" before
ORIGINS = ((2000, 3000), (7000, 8000))  # level-0 (x, y) of the first nucleus of each slide


def _circle(cx, cy, r, n=24):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ring = [[float(cx + r * np.cos(a)), float(cy + r * np.sin(a))] for a in t]
    return ring + [ring[0]]


def _feature(ring, cls=None, object_type="annotation"):
    props = {"objectType": object_type}
    if cls:
        props["classification"] = {"name": cls, "color": [200, 0, 0]}
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]}, "properties": props}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two big slides, each with a QuPath export: nuclei in two areas, one of them inside a Region* rectangle."""
    root = tmp_path_factory.mktemp("slides")
    for k, (ox, oy) in enumerate(ORIGINS):
        write_big_svs(root / f"case{k}.svs", SIZE, tile=512)
        features = [_feature(_circle(ox + dx, oy + dy, 30), object_type="detection")
                    for dx, dy in ((0, 0), (120, 40), (60, 150))]
        features.append(_feature([[9000, 1000], [9400, 1000], [9400, 1300], [9000, 1300], [9000, 1000]], "Region*"))
        features.append(_feature(_circle(9200, 1150, 40), "Tumor"))
        (root / f"case{k}.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return root


class _Counting:
    """A slide level that records every window read from it."""

    def __init__(self, level, reads):
        self._level, self._reads = level, reads
        self.shape, self.dtype, self.ndim = level.shape, level.dtype, level.ndim

    def __getitem__(self, key):
        out = np.asarray(self._level[key])
        self._reads.append((key, out.shape))
        return out

    def __getattr__(self, name):
        return getattr(self._level, name)


def test_train_on_big_slides_reads_only_the_annotated_regions(folder, tmp_path, monkeypatch, capsys):
    reads: dict[str, list] = {}
    opened = slides_module.open_slide

    def counting_open(path):
        slide = opened(path)
        log = reads.setdefault(slide.path.name, [])
        slide.levels = [_Counting(level, log) for level in slide.levels]
        return slide

    monkeypatch.setattr(slides_module, "open_slide", counting_open)
    out = tmp_path / "models"
    assert main(["train", "--images", str(folder), "--out", str(out), "--mpp", "0.5", "--json", *FAST]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["version"] == "v0001" and (out / "v0001.safetensors").is_file()
    assert read_metadata(out / "v0001.safetensors")["resolution"]["mpp"] == 0.5

    for k, (ox, oy) in enumerate(ORIGINS):
        name = f"case{k}.svs"
        assert reads[name], "the slide was read"
        objects, _ = read_features(folder / f"case{k}.geojson")
        allowed = annotated_boxes(objects, (SIZE // 2, SIZE // 2), 2.0)  # working pixels at 0.5 µm/px
        assert len(allowed) == 2, "the three nuclei make one region, the Region* rectangle another"
        read_pixels = 0
        for key, shape in reads[name]:
            ys, xs = key[0], key[1]
            read_pixels += shape[0] * shape[1]
            # the level read is level 0 (0.25 µm/px): a working box covers twice its size in level-0 pixels
            assert any(2 * y0 - 2 <= ys.start and ys.stop <= 2 * y1 + 2 and 2 * x0 - 2 <= xs.start
                       and xs.stop <= 2 * x1 + 2 for y0, y1, x0, x1 in allowed), f"read outside the regions: {key}"
        assert read_pixels < 0.01 * SIZE * SIZE, f"{read_pixels} pixels of {SIZE * SIZE} read"
        # the region is the nuclei's bounds grown by the margin
        nuclei = [b for b in allowed if b[2] <= ox // 2 < b[3]]
        assert nuclei and nuclei[0][0] == (oy - 30) // 2 - MARGIN and nuclei[0][2] == (ox - 30) // 2 - MARGIN


def test_a_slide_without_annotated_objects_on_it_is_one_line(folder, tmp_path, capsys):
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "case0.svs").symlink_to(folder / "case0.svs")
    (lonely / "case0.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(_circle(SIZE * 3, SIZE * 3, 20))]}))
    assert main(["train", "--images", str(lonely), "--out", str(tmp_path / "m"), *FAST]) != 0
    err = capsys.readouterr().err
    assert "no annotated object lies on the slide" in err and "Traceback" not in err


def test_annotated_boxes_merge_touching_objects_and_cut_long_ones():
    import shapely

    from napari_autosam.io.geojson import ImportedObject

    def obj(x0, y0, x1, y1):
        return ImportedObject(shapely.box(x0, y0, x1, y1), "annotation", None)

    # two objects 100 px apart at level 0 (50 working px at downsample 2) merge through their margins
    boxes = annotated_boxes([obj(1000, 1000, 1100, 1100), obj(1200, 1000, 1300, 1100)], (5000, 5000), 2.0, margin=32)
    assert boxes == [(468, 582, 468, 682)]
    # a long stroma annotation is cut into pieces no longer than max_side, covering it exactly
    pieces = annotated_boxes([obj(0, 0, 9000, 400)], (5000, 5000), 2.0, margin=0, max_side=2048)
    assert len(pieces) == 3 and all(x1 - x0 <= 2048 for _, _, x0, x1 in pieces)
    assert pieces[0][2] == 0 and pieces[-1][3] == 4500 and sum(x1 - x0 for _, _, x0, x1 in pieces) == 4500
    # objects off the slide give nothing to read
    assert annotated_boxes([obj(20000, 20000, 20100, 20100)], (5000, 5000), 2.0) == []
