"""Faults that need real processes: two writers on one store, SIGKILL during training, the console script.

The kill test kills ``napari-autosam train`` at random moments (3 by default,
10 with ``pytest -m heavy``); afterwards every version loads, the active
pointer is valid, and once the next run has started no debris is left.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from badinput import assert_error, gray_tif, malicious_pickle, snapshot

from napari_autosam.data.synthetic import write_dataset

_ACCEPTS = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    from napari_autosam.annotations import AnnotationStore
    root, seed, n, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    store = AnnotationStore(root)
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 255, (8, 8), dtype=np.uint8) for _ in range(n)]
    while not go.exists():
        time.sleep(0.01)
    for i, image in enumerate(images):
        store.accept(image, (image > 128).astype(np.uint8), source=f"process {seed} image {i}")
    print("accepted", n)
""")


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}  # PYTHONPATH passes on: the package under test


def test_two_processes_accepting_into_one_store_keep_every_accept(tmp_path):
    from napari_autosam.annotations import AnnotationStore

    go = tmp_path / "go"
    workers = [subprocess.Popen([sys.executable, "-c", _ACCEPTS, str(tmp_path / "store"), str(seed), "40", str(go)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
               for seed in (1, 2)]
    time.sleep(0.5)
    go.touch()  # both start accepting at the same moment
    results = [w.communicate(timeout=120) for w in workers]
    assert all(w.returncode == 0 for w in workers), results
    store = AnnotationStore(tmp_path / "store")
    history = store.history()
    assert len(history) == 80 and len({e.key for e in history}) == 80
    assert sorted(e.source for e in history) == sorted(f"process {s} image {i}" for s in (1, 2) for i in range(40))
    images, masks, _ = store.arrays()
    assert len(images) == 80 and all(np.array_equal(m, (i > 128)) for i, m in zip(images, masks))
    assert not list((tmp_path / "store").rglob(".*part*"))


# ------------------------------------------------------------------ SIGKILL during training


def _train_argv(data, store):
    images, masks = data
    return [sys.executable, "-m", "napari_autosam", "train", "--images", str(images), "--masks", str(masks),
            "--out", str(store), "--sam", "tiny", "--epochs", "3", "--h-epochs", "1", "--min-steps", "0", "--input-size", "64",
            "--batch-size", "2", "--variants", "identity", "--patience", "0", "--device", "cpu"]


def _reservations(store) -> set:
    found = set()
    for path in store.glob(".v*.reserved"):
        try:
            found.add((path.name, path.stat().st_mtime_ns))
        except FileNotFoundError:
            pass
    return found


def _wait_for_reservation(process, store, timeout=120.0) -> float:
    """Seconds from start until the run claimed its version (its training has begun); stale claims do not count."""
    old = _reservations(store)
    start = time.monotonic()
    while time.monotonic() - start < timeout and process.poll() is None:
        if _reservations(store) - old:
            return time.monotonic() - start
        time.sleep(0.02)
    return time.monotonic() - start


def _kill_runs(tmp_path, tiny_sam, kills: int):
    from napari_autosam.models.checkpoint import load_checkpoint
    from napari_autosam.models.store import ModelStore
    from napari_autosam.progress import run
    from napari_autosam.training import TrainConfig, samples_from_arrays, train

    data = write_dataset(tmp_path / "data", 2, (40, 40), seed=5)
    store = tmp_path / "models"
    # One run to the end: how long training takes once the version is reserved.
    store.mkdir()
    full = subprocess.Popen(_train_argv(data, store), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    _wait_for_reservation(full, store)
    began = time.monotonic()
    assert full.wait(timeout=300) == 0, full.stderr.read()
    span = time.monotonic() - began
    rng = random.Random(20261201)
    moments = []
    for _ in range(kills):
        process = subprocess.Popen(_train_argv(data, store), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env=_env())
        _wait_for_reservation(process, store)
        moment = rng.uniform(0, span * 1.1)  # anywhere from encoding to saving and activating
        time.sleep(moment)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        moments.append(round(moment, 2))
    debris = sorted(p.name for p in store.iterdir() if p.name.startswith("."))
    models = ModelStore(store)
    for version in models.versions():  # every version that exists is whole
        load_checkpoint(models.path(version))
    assert models.active in models.versions()
    # The next start (a new training run) cleans what the killed runs left and numbers on without gaps.
    image = np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)
    labels = np.zeros((32, 32), np.uint8)
    labels[8:20, 8:20] = 1
    result = run(train(tiny_sam, samples_from_arrays([image], [labels]), out=store,
                       config=TrainConfig(epochs=1, h_epochs=0, min_steps=0, input_size=64, batch_size=1, variants=("identity",),
                                          patience=None, device="cpu")))
    versions = models.versions()
    assert result.version == versions[-1] and versions == [f"v{i:04d}" for i in range(1, len(versions) + 1)]
    assert sorted(snapshot(store)) == sorted([*(f"{v}.safetensors" for v in versions), "active.json"]), moments
    assert models.active == result.version
    print(f"killed after {moments} s of a {span:.1f} s training; left before the next start: {debris}")
    return moments


def test_sigkill_during_training_leaves_loadable_versions_and_no_debris(tmp_path, tiny_sam):
    assert len(_kill_runs(tmp_path, tiny_sam, kills=3)) == 3


@pytest.mark.heavy
def test_sigkill_during_training_ten_times(tmp_path, tiny_sam):
    assert len(_kill_runs(tmp_path, tiny_sam, kills=10)) == 10


# ------------------------------------------------------------------ the real console entry point


def _console(*argv, cwd):
    done = subprocess.run([sys.executable, "-m", "napari_autosam", *map(str, argv)], capture_output=True, text=True,
                          env=_env(), cwd=cwd, timeout=300)
    return done.returncode, done.stdout + done.stderr


def test_console_batch_with_a_bad_file_and_sam_refusals(tmp_path):
    bad = tmp_path / "in" / "bad.png"
    good = gray_tif(tmp_path / "in" / "good.tif")
    bad.write_bytes(b"\x89PNG but not really")
    code, text = _console("segment", bad, good, "--out", tmp_path / "out", "--sam", "tiny", cwd=tmp_path)
    assert_error(code, text, "bad.png", "not a readable PNG", "1 of 2 files done, 1 failed")
    assert (tmp_path / "out" / "good_autosam.tif").is_file()

    evil = malicious_pickle(tmp_path / "evil.pth", tmp_path / "pwned")
    code, text = _console("segment", good, "--out", tmp_path / "out2", "--sam", evil, cwd=tmp_path)
    assert_error(code, text, "evil.pth", "refused for safety")
    assert "weights_only" not in text and not (tmp_path / "pwned").exists() and not list((tmp_path / "out2").glob("*.tif"))


def test_console_train_with_sam_download_failing(tmp_path):
    images, masks = write_dataset(tmp_path / "data", 2, (32, 32), seed=1)
    code, text = _console("train", "--images", images, "--masks", masks, "--out", tmp_path / "m", "--sam", "vit_b",
                          cwd=tmp_path)
    assert_error(code, text, "sam_vit_b_01ec64.pth", "could not download")
    assert len(text.splitlines()) < 12  # the error and its by-hand instructions, no dump
