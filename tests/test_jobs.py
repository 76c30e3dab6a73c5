"""The job layer: typed segment options, and one file segmented through the API as the command line does it."""

from __future__ import annotations

import hashlib

import pytest
import tifffile

from napari_autosam.data.synthetic import make_nuclei_image
from napari_autosam.jobs import SegmentOptions, output_stem, segment_file


def test_options_by_the_commands_names_and_their_checks():
    options = SegmentOptions.from_names(mode="instances", no_refine=True, tile=256, save_prob=True)
    assert options.mode == "instances" and options.refine is False and options.tile == 256 and options.save_prob
    assert SegmentOptions().refine is True and SegmentOptions().resolution_request == {}
    assert SegmentOptions(level=1).resolution_request == {"level": 1}
    with pytest.raises(TypeError, match="tiles"):
        SegmentOptions.from_names(tiles=3)
    with pytest.raises(ValueError, match="--tile >= 64"):
        SegmentOptions(tile=32).check()
    SegmentOptions(tile=0).check()  # 0: never tile


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_segment_file_writes_what_the_command_writes(tiny_sam, tmp_path, capsys):
    from napari_autosam.cli import main
    from napari_autosam.inference import Segmenter

    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, make_nuclei_image((96, 80), seed=5)[0])
    assert output_stem(path) == "cells"
    options = SegmentOptions(sam="tiny", mode="instances", refine=False, geojson=True, save_prob=True)
    steps = []

    def run_task(task, unit):
        from napari_autosam.progress import run

        steps.append(unit)
        return run(task)

    segment_file(Segmenter(tiny_sam), path, tmp_path / "api", options, run_task=run_task)
    report = capsys.readouterr().out
    assert steps == ["image"] and "cells.tif: 96×80" in report and "instances" in report
    code = main(["segment", str(path), "--out", str(tmp_path / "cli"), "--sam", "tiny", "--device", "cpu",
                 "--mode", "instances", "--no-refine", "--geojson", "--save-prob"])
    assert code == 0
    api = _digests(tmp_path / "api")
    assert sorted(api) == ["cells_autosam.tif", "cells_autosam_prob.tif", "cells_h.tif", "cells_h_prob.tif",
                           "cells_instances.geojson", "cells_instances.tif"]
    assert api == _digests(tmp_path / "cli")
