"""``torchrun --nproc_per_node 2`` on the CPU (gloo, 127.0.0.1): one version written, one process's result, no hang.

The one-step test checks the arithmetic exactly: with SGD (lr 1) the change
of every parameter is minus the gradient, and the two processes' averaged
gradient must equal one process's gradient on the whole batch to within
float32 rounding of the parameters (1e-6, while the changes are ~1e-3).  The
full run uses Adam, which divides each gradient by its own running size, so
parameters whose gradient is near zero move by about the learning rate
whichever way rounding tips them; there the comparison is on the loss and
the validation Dice of every validation (stated tolerances below).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_autosam.data.synthetic import make_nuclei_dataset

HERE = Path(__file__).parent
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
#: Tolerances of the two-process run against the one-process run with the same global batches (Adam, 6 + 3 steps).
LOSS_RTOL, DICE_ATOL = 5e-3, 0.01  # measured: 1.1e-3 and 6e-4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    env = dict(os.environ, NAPARI_AUTOSAM_DEVICE="cpu", NAPARI_AUTOSAM_DDP_TIMEOUT="60", OMP_NUM_THREADS="1")
    env.update(extra)
    return env


def _torchrun(*args) -> list[str]:
    return [TORCHRUN, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *args]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """4 training and 1 validation image whose masks are a big square (so a few steps visibly improve Dice)."""
    root = tmp_path_factory.mktemp("ddp-data")
    for sub, n, seed in (("train", 4, 1), ("val", 1, 2)):
        for kind in ("images", "masks"):
            (root / sub / kind).mkdir(parents=True)
        for i, (image, _) in enumerate(make_nuclei_dataset(n, (96, 96), seed=seed)):
            mask = np.zeros((96, 96), np.uint8)
            mask[8:88, 8:88] = 1
            tifffile.imwrite(root / sub / "images" / f"img_{i}.tif", image)
            tifffile.imwrite(root / sub / "masks" / f"img_{i}.tif", mask)
    return root


def _train_args(root: Path, out: Path) -> list[str]:
    return ["--images", str(root / "train/images"), "--masks", str(root / "train/masks"),
            "--val-images", str(root / "val/images"), "--val-masks", str(root / "val/masks"), "--out", str(out),
            "--sam", "tiny", "--generator", "hardnet_small", "--input-size", "64", "--batch-size", "2",
            "--variants", "identity,hflip", "--steps", "6", "--h-steps", "3", "--time-limit", "0", "--lr", "1e-3",
            "--patience", "0"]


@pytest.fixture(scope="module")
def two_processes(folders, session_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp-run") / "models"
    started = time.perf_counter()
    done = subprocess.run(_torchrun("-m", "napari_autosam", "train", *_train_args(folders, out)),
                          capture_output=True, text=True, timeout=300,
                          env=_env(NAPARI_AUTOSAM_CACHE=str(session_cache)))
    return done, out, time.perf_counter() - started


def test_torchrun_with_two_processes_trains_and_writes_one_version(two_processes):
    done, out, _ = two_processes
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["v0001.safetensors"]
    assert done.stdout.count("model: ") == 1 and "(version v0001)" in done.stdout  # rank 0 reports
    assert done.stderr.count("[save] saved") == 1  # and only rank 0 shows progress
    assert "error" not in done.stderr


@pytest.mark.heavy
def test_two_processes_match_one_process_with_the_same_global_batches(two_processes, folders, tiny_sam, tmp_path):
    from napari_autosam.cli import build_parser
    from napari_autosam.cli.resolution import load_samples_at
    from napari_autosam.cli.train_command import _config
    from napari_autosam.distributed.sharded import ShardedRun
    from napari_autosam.models.checkpoint import load_checkpoint
    from napari_autosam.progress import run
    from napari_autosam.training import train

    done, out, _ = two_processes
    assert done.returncode == 0, done.stderr[-2000:]
    args = build_parser().parse_args(["train", *_train_args(folders, tmp_path / "one")])
    samples, resolution = load_samples_at(args.images, args.masks, args, channels=None)
    val = load_samples_at(args.val_images, args.val_masks, args, channels=None)[0]
    one = run(train(tiny_sam, samples, config=_config(args, resolution), val_samples=val, out=args.out,
                    distributed=ShardedRun(2)))  # one process playing both shards
    two = load_checkpoint(out / "v0001.safetensors").metadata["history"]
    assert [(r["stage"], r["step"]) for r in two] == [(r["stage"], r["step"]) for r in one.history]
    assert one.metrics["best_step_g"] > 0  # training changed the model, so the comparison means something
    for a, b in zip(two, one.history):
        if b["loss"] is not None:
            assert a["loss"] == pytest.approx(b["loss"], rel=LOSS_RTOL)
        for key in ("val_dice_autosam", "val_dice_h"):
            assert abs(a[key] - b[key]) <= DICE_ATOL, (a, b)


def test_one_step_on_two_processes_equals_one_process_on_the_whole_batch(session_cache):
    done = subprocess.run(_torchrun(str(HERE / "ddp_one_step.py")), capture_output=True, text=True, timeout=300,
                          env=_env(NAPARI_AUTOSAM_CACHE=str(session_cache)))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["stats_count"] > 0 and result["largest_change"] > 1e-4
    assert result["change_difference"] <= 1e-6  # float32 rounding of parameters of size ~1
    assert result["stats_difference"] <= 1e-6  # BatchNorm running statistics of the global batch
    assert result["loss"] == pytest.approx(result["reference_loss"], rel=1e-6)


def test_a_failure_on_one_process_ends_both_with_one_line(folders, session_cache, tmp_path):
    """Two processes started by hand (no torchrun to kill the survivor): rank 1 runs out of memory mid-training."""
    env = _env(NAPARI_AUTOSAM_CACHE=str(session_cache), NAPARI_AUTOSAM_DDP_TIMEOUT="30", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(_free_port()), WORLD_SIZE="2")
    out = tmp_path / "models"
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, str(HERE / "ddp_failing_rank.py"), *_train_args(folders, out)],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    try:
        results = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert time.perf_counter() - started < 240
    assert [p.returncode for p in procs] == [1, 1]
    errors = [[line for line in err.splitlines() if "error" in line] for _, err in results]
    assert errors[1] == ["napari-autosam train: error: process 1 of 2: ran out of memory "
                         "(try a smaller --tile or --batch-size)"]
    assert len(errors[0]) == 1 and errors[0][0].startswith(
        "napari-autosam train: error: process 0 of 2: stopped because another training process failed")
    assert not any("Traceback" in err for _, err in results)
    assert not list(out.glob("*.safetensors"))  # the reserved version was given back, nothing written
