"""The tiles of one big slide spread over dask workers give the single process's OME-Zarr labels, byte for byte.

The "big" slide is small (1100×1040, 4 tiles of 768 px): ``format="ome-zarr"``
sends it to on-disk labels as the 4096² threshold does for real slides, and
``region_levels=0`` cuts its output into four one-chunk regions, so the
output regions are spread too.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import tifffile

from napari_autosam.cli import main
from napari_autosam.data.synthetic import make_nuclei_image

distributed = pytest.importorskip("distributed")

OPTIONS = {"sam": "tiny", "device": "cpu", "mode": "instances", "no_refine": True, "format": "ome-zarr", "tile": 768}
ARGS = ["--sam", "tiny", "--device", "cpu", "--mode", "instances", "--no-refine", "--format", "ome-zarr", "--tile", "768"]
TILES = 4


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    path = tmp_path_factory.mktemp("dask-tiles") / "slide.tif"
    tifffile.imwrite(path, make_nuclei_image((1100, 1040), seed=5)[0])
    return path


def tree(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (hidden ones too): relative path -> bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(slide, tmp_path_factory):
    """The single-process run: (its files, its report line)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("dask-tiles-reference")
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        assert main(["segment", str(slide), "--out", str(out), *ARGS]) == 0
    return tree(out), text.getvalue().strip()


@pytest.fixture(scope="module")
def client():
    from napari_autosam.distributed.cluster import connect

    with connect(workers=2) as client:
        yield client


def test_tiles_spread_over_both_workers_and_equal_one_process(client, slide, reference, tmp_path):
    from napari_autosam.distributed.dask_segment import segment_many
    from napari_autosam.progress import run

    files, report = reference
    events = []
    result = run(segment_many([slide], tmp_path, client=client, region_levels=0, **OPTIONS), events.append)
    assert not result.failed
    spread = result.tiles[str(slide)]
    assert len(spread) == 2 and all(n >= 1 for n in spread.values()) and sum(spread.values()) == TILES
    assert tree(tmp_path) == files and len(files) > 10  # three label pyramids, nothing left beside them
    assert result.reports[str(slide)] == report.splitlines()[-1]
    steps = [e.step for e in events]
    assert steps == sorted(steps) and events[-1].step == events[-1].total == 1 + TILES  # tiles, then the closing step
    assert any("tiles" in e.message for e in events)


async def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_among_the_tiles_changes_nothing(client, slide, reference, tmp_path):
    from napari_autosam.distributed.dask_segment import segment_many

    task = segment_many([slide], tmp_path, client=client, tiles_per_task=1, **OPTIONS)
    events = [next(task)]
    while "tiles in" not in events[-1].message:  # the slide is planned: its tile tasks are submitted
        events.append(next(task))
    busy, deadline = [], time.monotonic() + 60
    while not busy and time.monotonic() < deadline:
        busy = [a for a, keys in client.processing().items() if any("-tiles-" in str(k) for k in keys)]
        time.sleep(0.05)
    time.sleep(0.3)  # inside a tile task: reading, encoding or saving
    client.run(_die, workers=busy[:1], wait=False)
    events += list(iter(lambda: next(task, None), None))
    assert busy and busy[0] not in client.scheduler_info()["workers"]
    assert events[-1].step == events[-1].total == 1 + TILES
    assert tree(tmp_path) == reference[0]  # no scratch or temporary folder left, same bytes
    client.wait_for_workers(2, timeout=120)  # the nanny restarted it


def test_only_on_disk_slides_of_several_tiles_are_planned(sam, slide, tmp_path, monkeypatch):
    """The OME-Zarr threshold decides (lowered here), as in one process; one-tile images stay one task."""
    from napari_autosam.distributed.dask_segment import segment_options
    from napari_autosam.distributed.tile_tasks import plan_slide
    from napari_autosam.inference import Segmenter
    from napari_autosam.io import labels_zarr

    segmenter = Segmenter(sam)
    args = segment_options(tmp_path, sam="tiny", tile=768)
    assert plan_slide(segmenter, slide, tmp_path, "slide", args) is None  # 1100×1040: TIFF outputs by default
    monkeypatch.setattr(labels_zarr, "ON_DISK_ABOVE", 1000 * 1000)
    plan = plan_slide(segmenter, slide, tmp_path, "slide", args)
    assert plan is not None and plan.n_tiles == TILES and plan.roles == ("autosam", "h")
    assert sorted(Path(p).parent for p in plan.targets.values()) == [tmp_path, tmp_path]
    assert all(Path(p).name.startswith(f".slide_{r}.ome.zarr.") for r, p in plan.targets.items())
    assert plan_slide(segmenter, slide, tmp_path, "slide", segment_options(tmp_path, sam="tiny", tile=0)) is None


def test_regions_own_whole_chunks_and_groups_follow_the_batches():
    from napari_autosam.distributed.dask_tiles import tiles_per_task
    from napari_autosam.distributed.tile_tasks import region_boxes
    from napari_autosam.io.labels_zarr import CHUNK

    boxes = region_boxes((5000, 9000), 1)
    assert len(boxes) == 3 * 5 and boxes[0] == (0, 2 * CHUNK, 0, 2 * CHUNK) and boxes[-1] == (4096, 5000, 8192, 9000)
    assert sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in boxes) == 5000 * 9000  # a partition, chunk-aligned
    assert all(v % CHUNK == 0 for box in boxes for v in (box[0], box[2]))
    assert tiles_per_task(4, 2) == 1 and tiles_per_task(1000, 2) == 16 and tiles_per_task(9, 2, batch_size=4) == 4


def _trim_threshold():
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def test_local_workers_keep_the_default_malloc_thresholds(client):
    """dask's MALLOC_TRIM_THRESHOLD_ makes torch on a CPU ~1.6x slower; --dask-workers leaves it out."""
    assert set(client.run(_trim_threshold).values()) == {None}


def test_a_spread_preview_with_geojson_equals_one_process(client, slide, tmp_path):
    """h only (no SAM), instances split from it, and the GeoJSON the closing task writes."""
    from napari_autosam.distributed.dask_segment import segment_many
    from napari_autosam.progress import run

    assert main(["segment", str(slide), "--out", str(tmp_path / "one"), *ARGS, "--preview", "--geojson"]) == 0
    result = run(segment_many([slide], tmp_path / "dask", client=client, preview=True, geojson=True, **OPTIONS))
    assert not result.failed and sum(result.tiles[str(slide)].values()) == TILES
    assert [p.name for p in result.written[str(slide)]] == ["slide_h.ome.zarr", "slide_instances.geojson",
                                                            "slide_instances.ome.zarr"]
    assert tree(tmp_path / "dask") == tree(tmp_path / "one")
