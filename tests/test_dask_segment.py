"""Segmentation on a dask.distributed cluster equals the single-process command line (masks byte for byte)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import tifffile
from same_files import differences

from napari_autosam.cli import main
from napari_autosam.data.synthetic import make_nuclei_image

distributed = pytest.importorskip("distributed")

SHAPES = ((96, 112), (80, 80), (120, 100))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dask-inputs")
    paths = []
    for i, shape in enumerate(SHAPES):
        path = folder / f"img{i}.tif"
        tifffile.imwrite(path, make_nuclei_image(shape, seed=10 + i)[0])
        paths.append(path)
    return paths


#: fp32: a CPU with native bfloat16 would run the encoder in bf16, whose sums depend on the thread count
ARGS = ("--sam", "tiny", "--device", "cpu", "--precision", "fp32", "--mode", "instances", "--no-refine", "--save-prob")


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory):
    """The single-process run's files: name -> bytes."""
    out = tmp_path_factory.mktemp("dask-reference")
    assert main(["segment", *map(str, images), "--out", str(out), *ARGS]) == 0
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_local_cluster_two_workers_equals_one_process(images, reference, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", *map(str, images), "--out", str(out), *ARGS, "--dask-workers", "2"]) == 0
    captured = capsys.readouterr()
    assert "dask: 2 workers at tcp://127.0.0.1:" in captured.err and "dashboard" in captured.err
    assert all(f"img{i}.tif: " in captured.out for i in range(3))
    assert len(reference) == 15 and differences(out, reference) == []  # 5 files per image, the same


@pytest.fixture(scope="module")
def client():
    from napari_autosam.distributed.cluster import connect

    with connect(workers=2) as client:
        yield client


def loads(client):
    """SAM/model loads per worker."""
    return client.run(lambda dask_worker: sum(p.loads for n, p in dask_worker.plugins.items()
                                              if n.startswith("napari-autosam:")))


def test_python_api_loads_the_model_once_per_worker(client, images, reference, tmp_path):
    from napari_autosam.distributed.dask_segment import segment_many
    from napari_autosam.progress import run

    events = []
    task = segment_many(images, tmp_path / "a", client=client, sam="tiny", device="cpu", mode="instances",
                        no_refine=True, save_prob=True, precision="fp32")
    result = run(task, events.append)
    first = loads(client)
    again = run(segment_many(images[:2], tmp_path / "b", client=client, sam="tiny", device="cpu"))
    assert differences(tmp_path / "a", reference) == []
    assert not result.failed and [len(v) for v in result.written.values()] == [5, 5, 5]
    assert [e.step for e in events] == [0, 1, 2, 3] and events[-1].total == 3
    assert sum(first.values()) <= 2 and loads(client) == first  # once per worker, kept between batches
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == sorted(
        f"img{i}_{k}.tif" for i in range(2) for k in ("autosam", "h"))
    assert set(again.workers.values()) <= set(first)


def test_a_bad_file_is_one_line_and_the_others_go_on(client, images, tmp_path):
    import shutil

    from napari_autosam.distributed.dask_segment import segment_many
    from napari_autosam.progress import run

    bad, good = tmp_path / "broken.tif", tmp_path / "img1.tif"
    bad.write_bytes(b"not a tiff")
    shutil.copy(images[1], good)
    result = run(segment_many([bad, good], tmp_path / "out", client=client, sam="tiny", device="cpu"))
    assert list(result.failed) == [str(bad)] and "broken.tif" in result.failed[str(bad)]
    assert "\n" not in result.failed[str(bad)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img1_autosam.tif", "img1_h.tif"]
    with pytest.raises(TypeError, match="tiles"):
        run(segment_many([images[1]], tmp_path / "out", client=client, tiles=3))


async def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_mid_run_changes_nothing(client, images, reference, tmp_path):
    from napari_autosam.distributed.dask_segment import segment_many

    task = segment_many(images, tmp_path, client=client, sam="tiny", device="cpu", mode="instances",
                        no_refine=True, save_prob=True, precision="fp32")
    assert next(task).step == 0
    busy, deadline = [], time.monotonic() + 60
    while not busy and time.monotonic() < deadline:
        busy = [a for a, keys in client.processing().items() if keys]
        time.sleep(0.05)
    time.sleep(0.3)  # inside the task: reading, encoding or writing
    client.run(_die, workers=busy[:1], wait=False)
    events = list(iter(lambda: next(task, None), None))
    assert busy and events[-1].step == 3 and busy[0] not in client.scheduler_info()["workers"]
    assert differences(tmp_path, reference) == []  # no temporary or scratch file left, the same files
    client.wait_for_workers(2, timeout=120)  # the nanny restarted it


def test_ome_zarr_labels_from_the_workers_equal_one_process(client, images, tmp_path):
    from napari_autosam.distributed.dask_segment import segment_many
    from napari_autosam.progress import run

    def tree(root):
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    assert main(["segment", str(images[0]), "--out", str(tmp_path / "one"), *ARGS[:9], "--format", "ome-zarr"]) == 0
    result = run(segment_many(images[:1], tmp_path / "dask", client=client, sam="tiny", device="cpu",
                              mode="instances", no_refine=True, format="ome-zarr", precision="fp32"))
    assert not result.failed and all(p.is_dir() for p in result.written[str(images[0])])
    assert tree(tmp_path / "dask") == tree(tmp_path / "one") and len(tree(tmp_path / "one")) > 3


def test_without_the_option_dask_is_never_imported(images, tmp_path):
    code = ("import sys; from napari_autosam.cli import main; "
            f"rc = main(['segment', {str(images[1])!r}, '--out', {str(tmp_path)!r}, '--sam', 'tiny']); "
            "assert 'distributed' not in sys.modules and 'dask' not in sys.modules, 'dask imported'; sys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_missing_extra_is_one_line(images, tmp_path):
    code = ("import sys; sys.modules['distributed'] = None; from napari_autosam.cli import main; "
            f"sys.exit(main(['segment', {str(images[1])!r}, '--out', {str(tmp_path)!r}, '--dask-workers', '2']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "pip install 'napari-autosam[distributed]'" in done.stderr.strip().splitlines()[-1]


def test_no_scheduler_at_the_address_is_one_line():
    from napari_autosam.cli import CommandError
    from napari_autosam.distributed.cluster import connect

    with pytest.raises(CommandError, match="no dask scheduler answered there") as caught:
        with connect("tcp://127.0.0.1:9", timeout="2s"):
            pass
    assert "\n" not in str(caught.value)
