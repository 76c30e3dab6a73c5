"""Training steps per second: one process versus ``torchrun`` with 2 processes, the same global batch.

Usage::

    python benchmarks/bench_ddp.py [--steps 12] [--batch 4] [--size 128] [--input-size 128] [--sam tiny]
                                   [--device cpu] [--threads 2]

Runs stage g of training three ways on the same synthetic images: one
process with ``--threads`` threads, one process with 1 thread, and two
processes under ``torchrun`` (``--threads / 2`` threads each, gloo on the
CPU; NCCL and one GPU each with ``--device cuda``).  The global batch is
``--batch`` images in every case.  The time per step is taken between the
first and the last step's progress event of rank 0 (after encoding and
before the last validation), so it is the steady training rate.  Printed as
steps/s and as ratios to the one-process run, with the machine's load
average, all measured in this one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def worker(args) -> None:
    """One process of a measurement (plain, or one rank under torchrun): print rank 0's steps/s as JSON."""
    from napari_autosam.data.synthetic import make_nuclei_dataset
    from napari_autosam.distributed.ddp import training_session
    from napari_autosam.progress import run
    from napari_autosam.sam.registry import load_sam
    from napari_autosam.training import TrainConfig, samples_from_arrays, train

    sam = run(load_sam(args.sam, device=args.device))
    samples = samples_from_arrays(*zip(*make_nuclei_dataset(2 * args.batch, (args.size, args.size), seed=1)))
    val = samples_from_arrays(*zip(*make_nuclei_dataset(1, (args.size, args.size), seed=2)))
    config = TrainConfig(generator="hardnet_small", input_size=args.input_size, batch_size=args.batch,
                         steps=args.steps, h_steps=0, val_every=args.steps, patience=None, variants=("identity",),
                         device=args.device)
    times = {}

    def seen(event):
        if event.phase == "train_g" and event.depth == 0 and event.step > 0:
            times.setdefault(event.step, time.perf_counter())

    with training_session(args.device) as shared:
        if shared is not None:
            sam = sam.to(shared.device)
            config = dataclasses.replace(config, device=str(shared.device))
        with tempfile.TemporaryDirectory() as out:
            run(train(sam, samples, config=config, val_samples=val, out=Path(out) / "m.safetensors",
                      distributed=shared), seen)
        if shared is None or shared.is_main:
            rate = (args.steps - 1) / (times[args.steps] - times[1])
            print(json.dumps({"steps_per_s": rate}), flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(args, processes: int, threads: int) -> float:
    here = [sys.executable, __file__, "--worker", "--steps", str(args.steps), "--batch", str(args.batch),
            "--size", str(args.size), "--input-size", str(args.input_size), "--sam", args.sam,
            "--device", args.device]
    if processes > 1:
        torchrun = str(Path(sys.executable).with_name("torchrun"))
        here = [torchrun, "--nproc_per_node", str(processes), "--master_addr", "127.0.0.1",
                "--master_port", str(_free_port()), *here[1:]]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run(here, capture_output=True, text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["steps_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--sam", default="tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="threads of the one-process run (split over 2 ranks)")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"stage g, global batch {args.batch}, {args.size}² images, g input {args.input_size}, SAM {args.sam}, "
          f"{args.device}; load average {load} on {os.cpu_count()} cores", flush=True)
    one = measure(args, 1, args.threads)
    single_thread = measure(args, 1, 1)
    two = measure(args, 2, max(1, args.threads // 2))
    print(f"1 process, {args.threads} threads : {one:.3f} steps/s (1.00)")
    print(f"1 process, 1 thread   : {single_thread:.3f} steps/s ({single_thread / one:.2f})")
    print(f"2 processes ({max(1, args.threads // 2)} thread each): {two:.3f} steps/s ({two / one:.2f})")
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; {time.strftime('%H:%M UTC', time.gmtime())}")


if __name__ == "__main__":
    main()
