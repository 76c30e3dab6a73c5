"""``segment --measure``: the objects of what segment wrote, measured into a table, a summary and a report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile
from skimage.measure import label

from napari_autosam.cli import main
from napari_autosam.data.synthetic import make_nuclei_image


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NAPARI_AUTOSAM_CACHE", str(tmp_path_factory.getbasetemp() / "cli-cache"))
    monkeypatch.setenv("NAPARI_AUTOSAM_CHECKPOINT_URL", "http://127.0.0.1:9/unreachable")


@pytest.mark.parametrize("fmt", ["tiff", "ome-zarr"])
def test_segment_measure_writes_the_tables_and_ends_with_a_summary_line(tmp_path, capsys, fmt):
    path = tmp_path / "nuclei.tif"
    tifffile.imwrite(path, make_nuclei_image((100, 120), seed=4)[0])
    out = tmp_path / "out"
    assert main(["segment", str(path), "--out", str(out), "--sam", "tiny", "--device", "cpu", "--format", fmt,
                 "--measure"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    for name in ("nuclei_objects.csv", "nuclei_summary.csv", "nuclei_report.html"):
        assert (out / name).is_file()
    mask = (tifffile.imread(out / "nuclei_autosam.tif") if fmt == "tiff"
            else np.asarray(__import__("zarr").open_group(str(out / "nuclei_autosam.ome.zarr"), mode="r")["0"]))
    regions = int(label(mask > 0, connectivity=2).max())  # the untrained model's regions, each one object
    table = pd.read_csv(out / "nuclei_objects.csv")
    assert len(table) == regions and "area_px2" in table.columns  # no µm/px: px units
    assert lines[-1].startswith(f"nuclei.tif: {regions} objects, ") and "per million px²" in lines[-1]
