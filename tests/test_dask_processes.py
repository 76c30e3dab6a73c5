"""A scheduler and two workers as separate processes on 127.0.0.1; a worker killed mid-run changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import tifffile
from same_files import differences

from napari_autosam.cli import main
from napari_autosam.data.synthetic import make_nuclei_image

pytest.importorskip("distributed")

LIMIT = 300  # seconds: everything started here is killed after this, whatever happens


@pytest.fixture
def cluster(tmp_path):
    """``(scheduler address, {worker name: Popen})``; always torn down."""
    env_args = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(file)], **env_args)]
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        workers = {}
        for name in ("w0", "w1"):
            workers[name] = subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--name", name, "--nthreads", "1",
                 "--no-nanny", "--host", "127.0.0.1", "--no-dashboard", "--death-timeout", "60"], **env_args)
        procs += workers.values()
        watchdog = threading.Timer(LIMIT, lambda: [p.kill() for p in procs])
        watchdog.start()
        yield address, workers
    finally:
        for proc in reversed(procs):
            proc.kill()
            proc.wait(timeout=30)
        if "watchdog" in locals():
            watchdog.cancel()


@pytest.mark.heavy  # 25-45 s on the shared machine; test_dask_segment kills a LocalCluster worker by default
def test_worker_killed_mid_run_still_gives_the_single_process_files(cluster, tmp_path, capsys):
    from distributed import Client

    from napari_autosam.distributed.dask_segment import segment_many

    address, workers = cluster
    paths = []
    for i, shape in enumerate(((96, 112), (80, 80), (120, 100), (90, 90))):
        paths.append(tmp_path / f"img{i}.tif")
        tifffile.imwrite(paths[-1], make_nuclei_image(shape, seed=20 + i)[0])
    reference = tmp_path / "reference"
    assert main(["segment", *map(str, paths), "--out", str(reference), "--sam", "tiny", "--device", "cpu",
                 "--save-prob"]) == 0

    out, killed = tmp_path / "out", None
    with Client(address, timeout="60s") as client:
        client.wait_for_workers(2, timeout=120)
        names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
        assert {names[a]: pid for a, pid in client.run(os.getpid).items()} == {n: p.pid for n, p in workers.items()}
        task = segment_many(paths, out, client=client, sam="tiny", device="cpu", save_prob=True)
        events = []
        while True:
            try:
                events.append(next(task))
            except StopIteration as stop:
                result = stop.value
                break
            if killed is None:  # kill the first worker seen busy, before its task is done
                deadline = time.monotonic() + 60
                while killed is None and time.monotonic() < deadline:
                    busy = [a for a, keys in client.processing().items() if keys]
                    if busy:
                        time.sleep(0.5)
                        killed = names[busy[0]]
                        workers[killed].kill()
                    time.sleep(0.05)
        alive = {w["name"] for w in client.scheduler_info()["workers"].values()}
    assert killed is not None and workers[killed].wait(timeout=30) != 0 and killed not in alive
    assert not result.failed and len(result.written) == 4 and events[-1].step == 4
    assert set(result.workers.values()) <= set(names)
    assert differences(out, reference) == []

    # the command line on the same scheduler, with the worker that is left
    assert main(["segment", *map(str, paths[:2]), "--out", str(tmp_path / "cli"), "--sam", "tiny", "--device", "cpu",
                 "--save-prob", "--dask-scheduler", address]) == 0
    assert f"dask: 1 worker at {address}" in capsys.readouterr().err
    assert differences(tmp_path / "cli", {p.name: p.read_bytes() for p in reference.iterdir()
                                          if p.name.startswith(("img0_", "img1_"))}) == []
