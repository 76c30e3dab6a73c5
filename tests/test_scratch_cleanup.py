"""Nothing the package puts in the temp folder outlives its process: tiled segmentations, dask's workers.

Each case runs in a child process with its own ``TMPDIR`` and looks at that
folder once the child has ended, however it ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from napari_autosam.io.atomic import scratch_folder


def _child(code: str, tmp, *, wait: bool = True) -> subprocess.Popen | subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-c", textwrap.dedent(code)]
    if not wait:
        return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)


def test_a_tiled_segmentation_leaves_nothing_in_the_temp_folder(tmp_path):
    temp = tmp_path / "temp"
    temp.mkdir()
    child = _child("""
        import tempfile
        import numpy as np
        from napari_autosam.inference import Segmenter
        from napari_autosam.progress import run
        from napari_autosam.sam.registry import load_sam

        image = np.random.default_rng(0).integers(0, 255, (160, 200), dtype=np.uint8)
        result = run(Segmenter(run(load_sam("tiny", device="cpu"))).segment(image, tile=96, overlap=16))
        assert result.store is not None and result.store.parent == __import__("pathlib").Path(tempfile.gettempdir())
        print("store", result.store)  # the caller never removes it
    """, temp)
    assert child.returncode == 0, child.stderr
    assert "napari-autosam-seg-pid" in child.stdout
    assert list(temp.iterdir()) == []


def test_a_killed_process_scratch_is_removed_by_the_next(tmp_path):
    child = _child(f"""
        import time
        from napari_autosam.io.atomic import scratch_folder
        path = scratch_folder({str(tmp_path)!r}, "napari-autosam-seg-")
        (path / "part.zarr").mkdir()
        print(path, flush=True)
        time.sleep(600)
    """, tmp_path, wait=False)
    left = child.stdout.readline().strip()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert os.path.isdir(left)  # a kill runs no clean-up
    mine = scratch_folder(tmp_path, "napari-autosam-seg-")
    assert not os.path.exists(left)
    assert sorted(tmp_path.iterdir()) == [mine]


def test_a_local_dask_cluster_leaves_no_dask_scratch_space(tmp_path):
    temp = tmp_path / "temp"
    temp.mkdir()
    child = _child("""
        from napari_autosam.distributed.cluster import connect
        with connect(workers=1) as client:
            assert client.submit(sum, [1, 2]).result() == 3
    """, temp)
    assert child.returncode == 0, child.stderr
    assert list(temp.iterdir()) == []
