"""The speed ratios of issue 15, each measured in one run of this script.

Usage::

    python benchmarks/bench_ratios.py            # SAM ViT-B, random weights in the official format, 1024² image
    python benchmarks/bench_ratios.py --quick    # tiny SAM, 256² image (CI-sized)
    python benchmarks/bench_ratios.py --skip grid,training

Printed (every figure with the load average when it was taken):

1. encoder: bf16 / fp32 and fused (SDPA) / stock attention, in this process;
2. whole process / encoder: ``napari-autosam segment`` on one image in a
   fresh process (imports, loading, writing included) against the encoder's
   own time here, at the precision ``auto`` resolves to;
3. grid generator / AutoSAM, whole processes: segment-anything's
   ``SamAutomaticMaskGenerator`` (default settings; 8×8 points with
   ``--quick``) in a fresh process that
   loads the same checkpoint file;
4. instance mode / grid generator: ``segment --mode instances`` with the
   untrained g and with a g fine-tuned here (``napari-autosam train`` on
   other synthetic images, ``--train-steps`` steps), both whole processes;
   then in this process with a g whose mask is the nuclei (the known-answer
   model), before (every object prompted, batches of 32) and after (faint
   objects dropped, at most ``max_prompts`` per window, batches of 64), with
   the instance counts and the time per object;
5. fine-tuning: a step that re-encodes the image / a step on the cached embedding
   (and that step with segment-anything's stock decoder forward / the fast one).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from napari_autosam.progress import run


def load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


GRID_CHILD = r"""
import sys, time, numpy as np, tifffile, torch
start = time.perf_counter()
from segment_anything import SamAutomaticMaskGenerator, sam_model_registry
variant, checkpoint, image_path, points = sys.argv[1:5]
if variant == "tiny":
    from napari_autosam.sam.registry import load_sam_checkpoint
    sam = load_sam_checkpoint(checkpoint)
else:
    sam = sam_model_registry[variant](checkpoint=checkpoint)
gray = tifffile.imread(image_path)
rgb = np.repeat(gray[..., None], 3, axis=-1)
t0 = time.perf_counter()
masks = SamAutomaticMaskGenerator(sam, points_per_side=int(points)).generate(rgb)
print(f"GRID {time.perf_counter() - t0:.3f} {len(masks)}")
"""


def subprocess_seconds(cmd: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}… failed: {done.stderr[-2000:]}")
    return elapsed, done.stdout + done.stderr


def encoder_seconds(sam, rgb: np.ndarray, precision: str, repeats: int) -> float:
    from napari_autosam.sam.embedding import embed_images

    return min(timed(lambda: run(embed_images(sam, [rgb], precision=precision)))[0] for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny SAM and a 256² image")
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--points", type=int, default=None,
                        help="grid generator points per side (default 32, SAM's default; --quick: 8)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="part 5 in CPU seconds (steadier on a shared machine; run with OMP_NUM_THREADS=1)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: encoder,process,grid,instances,training")
    parser.add_argument("--train-steps", type=int, default=None,
                        help="g steps of the fine-tuned g of part 4 (default 120; --quick: 40); h gets two thirds")
    parser.add_argument("--no-before", action="store_true",
                        help="part 4 without the in-process 'before' runs (every object prompted: ~30 min for ViT-B)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    import tifffile

    from napari_autosam.data.synthetic import make_nuclei_image
    from napari_autosam.device import resolve_precision
    from napari_autosam.io.normalize import to_rgb_uint8
    from napari_autosam.sam.attention import use_fast_attention, use_stock_attention
    from napari_autosam.sam.registry import (
        SAM_BUILDERS,
        load_sam_checkpoint,
        tiny_checkpoint,
    )

    variant = "tiny" if args.quick else "vit_b"
    size = args.size or (256 if args.quick else 1024)
    repeats = args.repeats or (3 if args.quick else 2)  # the encoder: the faster of two calls (the first pays warm-up)
    args.points = args.points or (8 if args.quick else 32)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ratios-"))
    env = dict(os.environ, NAPARI_AUTOSAM_CACHE=str(tmp / "cache"), PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    # The whole processes run as a user's would: with the package's bytecode compiled once, not
    # recompiled at every start (some shells set PYTHONDONTWRITEBYTECODE).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    import compileall

    import napari_autosam

    compileall.compile_dir(Path(napari_autosam.__file__).parent, quiet=1)
    if variant == "tiny":
        checkpoint = tiny_checkpoint(tmp / "checkpoints")
    else:
        checkpoint = tmp / f"sam_{variant}_random.pth"
        torch.manual_seed(0)
        torch.save(SAM_BUILDERS[variant]().state_dict(), checkpoint)  # the official layout, random values
    sam = load_sam_checkpoint(checkpoint)
    image, truth = make_nuclei_image((size, size), seed=0)
    image = (np.clip(image / np.percentile(image, 99.5), 0, 1) * 255).astype(np.uint8)
    image_path = tmp / "nuclei.tif"
    tifffile.imwrite(image_path, image)
    rgb = to_rgb_uint8(image)[0]
    auto = resolve_precision("cpu" if not torch.cuda.is_available() else "cuda").name
    print(f"SAM {variant} (random weights), {size}² image with {truth.max()} nuclei, torch threads "
          f"{torch.get_num_threads()}, auto precision here: {auto}; {load()}", flush=True)

    encoder_fp32 = encoder_seconds(sam, rgb, "fp32", repeats)
    if "encoder" not in skip:
        encoder_bf16 = encoder_seconds(sam, rgb, "bf16", repeats)
        use_stock_attention(sam)
        stock = min(timed(lambda: run(embed_images_stock(sam, rgb)))[0] for _ in range(repeats))
        use_fast_attention(sam)
        print(f"1. encoder fp32 {encoder_fp32:.2f} s, bf16 {encoder_bf16:.2f} s: bf16/fp32 = "
              f"{encoder_bf16 / encoder_fp32:.2f}; stock attention {stock:.2f} s, fused {encoder_fp32:.2f} s: "
              f"stock/fused = {stock / encoder_fp32:.2f}; {load()}", flush=True)
    encoder_auto = encoder_seconds(sam, rgb, "auto", repeats) if auto != "fp32" else encoder_fp32

    cli = [sys.executable, "-m", "napari_autosam", "segment", str(image_path), "--sam", str(checkpoint), "--device", "cpu"]
    t_process = None
    if "process" not in skip or "grid" not in skip:
        t_process, _ = subprocess_seconds([*cli, "--out", str(tmp / "out")], env)
        print(f"2. whole process `napari-autosam segment` {t_process:.2f} s, encoder {encoder_auto:.2f} s: "
              f"process/encoder = {t_process / encoder_auto:.2f} (goal <= 1.3); {load()}", flush=True)
    t_grid = None
    if "grid" not in skip:
        t_grid_process, out = subprocess_seconds([sys.executable, "-c", GRID_CHILD, variant, str(checkpoint),
                                                 str(image_path), str(args.points)], env)
        t_grid, kept = (float(v) for v in out.split("GRID ")[1].split()[:2])
        print(f"3. grid generator ({args.points}×{args.points} points) whole process {t_grid_process:.1f} s (generate() {t_grid:.1f} s, {int(kept)} masks): "
              f"grid/AutoSAM whole process = {t_grid_process / t_process:.1f}× (goal >= 12); {load()}", flush=True)
        t_grid = t_grid_process
    if "instances" not in skip:
        steps = args.train_steps or (40 if args.quick else 120)
        instances(sam, image, cli, env, tmp, t_grid, args.points, checkpoint, steps, not args.no_before)
    if "training" not in skip:
        from bench_training import step_times

        from napari_autosam.data.synthetic import make_nuclei_dataset
        from napari_autosam.training import TrainConfig, samples_from_arrays

        pairs = make_nuclei_dataset(2, (256, 256), seed=0, stain="he")
        samples = samples_from_arrays([p[0] for p in pairs], [p[1] for p in pairs])
        clock = time.process_time if args.cpu_time else time.perf_counter
        t = step_times(sam, samples, TrainConfig(), torch.device("cpu"), max(3, repeats), clock)
        unit = "CPU s" if args.cpu_time else "s"
        print(f"5. fine-tuning step: cached {t['cached']:.3f} {unit} (stock decoder {t['cached_stock']:.3f}: "
              f"{t['cached_stock'] / t['cached']:.2f}×), re-encoding {t['reencoding']:.2f} {unit} (encoder "
              f"{t['encoder']:.2f}): re-encoding/cached = {t['reencoding'] / t['cached']:.1f}× (goal >= 50); "
              f"{load()}", flush=True)
        print(f"   g alone (forward, backward, Adam; no decoder) {t['g']:.3f} {unit}: even a free decoder would give "
              f"at most (encoder + g)/g = {(t['encoder'] + t['g']) / t['g']:.1f}×", flush=True)
        if not args.cpu_time:
            rate_g, rate_mm = g_flop_rate(), matmul_flop_rate()
            print(f"   g's forward + backward runs at {rate_g:.0f} GFLOP/s, a 2048² float32 matrix product at "
                  f"{rate_mm:.0f} GFLOP/s here: g is {rate_g / rate_mm:.0%} of what this CPU's matrix unit gives; "
                  f"{load()}", flush=True)


def g_flop_rate() -> float:
    """GFLOP/s of the CPU default g's forward and backward on one 256² input (FLOPs counted by PyTorch)."""
    from torch.utils.flop_counter import FlopCounterMode

    from napari_autosam.models.prompt_generator import build_prompt_generator

    g = build_prompt_generator("hardnet_small", input_size=256).train()
    x = torch.randn(1, 3, 256, 256)

    def step():
        g.zero_grad(set_to_none=True)
        g(x).square().mean().backward()

    with FlopCounterMode(display=False) as counter:
        step()
    step()
    seconds = min(timed(step)[0] for _ in range(5))
    return counter.get_total_flops() / seconds / 1e9


def matmul_flop_rate() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    seconds = min(timed(lambda: a @ b)[0] for _ in range(5))
    return 2 * 2048**3 / seconds / 1e9


def embed_images_stock(sam, rgb):
    """embed_images with the stock attention kept (embed_images itself switches the fused one on)."""
    from napari_autosam.sam import attention

    real = attention.use_fast_attention
    attention.use_fast_attention = lambda s, enabled=None: False
    try:
        from napari_autosam.sam.embedding import embed_images

        return (yield from embed_images(sam, [rgb], precision="fp32"))
    finally:
        attention.use_fast_attention = real


def fine_tuned_store(cli_train: list[str], env: dict, tmp: Path, size: int, steps: int) -> tuple[Path, float]:
    """A g (and h) fine-tuned by ``napari-autosam train`` on 4 other synthetic nuclei images; its store and seconds."""
    import tifffile

    from napari_autosam.data.synthetic import make_nuclei_dataset

    images, masks = tmp / "train" / "images", tmp / "train" / "masks"
    images.mkdir(parents=True), masks.mkdir(parents=True)
    for i, (img, labels) in enumerate(make_nuclei_dataset(4, (size // 2, size // 2), seed=1)):
        img = (np.clip(img / np.percentile(img, 99.5), 0, 1) * 255).astype(np.uint8)
        tifffile.imwrite(images / f"n{i}.tif", img)
        tifffile.imwrite(masks / f"n{i}.tif", (labels > 0).astype(np.uint8))
    store = tmp / "store"
    seconds, _ = subprocess_seconds([*cli_train, "--images", str(images), "--masks", str(masks), "--out", str(store),
                                     "--steps", str(steps), "--h-steps", str(max(1, 2 * steps // 3)),
                                     "--variants", "identity"], env)
    return store, seconds


def instances(sam, image, cli, env, tmp, t_grid, points: int, checkpoint, steps: int, before_runs: bool) -> None:
    import re

    from napari_autosam.inference import InstanceOptions, Segmenter
    from napari_autosam.inference.testing import threshold_model

    grid = f" ({points}² points)"
    t_cli, out = subprocess_seconds([*cli, "--out", str(tmp / "inst"), "--mode", "instances"], env)
    found = re.findall(r"(\d+) instances", out)
    ratio = f", instances/grid{grid} = {t_cli / t_grid:.2f} (goal <= 1 at 32²)" if t_grid else ""
    print(f"4. `segment --mode instances`, untrained g, whole process {t_cli:.1f} s ({found[-1] if found else '?'} instances)"
          f"{ratio}; {load()}", flush=True)
    train_cli = [sys.executable, "-m", "napari_autosam", "train", "--sam", str(checkpoint), "--device", "cpu"]
    store, t_train = fine_tuned_store(train_cli, env, tmp, image.shape[0], steps)
    # Prompts from h(g(I)), as in the in-process runs below (and as the figures in the docs were taken).
    t_cli, out = subprocess_seconds([*cli, "--out", str(tmp / "inst-trained"), "--mode", "instances",
                                     "--instance-source", "h", "--model", str(store)], env)
    found = re.findall(r"(\d+) instances", out)
    capped = "; capped" if "capped" in out else ""
    ratio = f", grid{grid}/instances = {t_grid / t_cli:.1f}× (goal >= 3 at 32²)" if t_grid else ""
    print(f"   `segment --mode instances --instance-source h`, g fine-tuned here ({steps} steps, {t_train:.0f} s), whole process "
          f"{t_cli:.1f} s ({found[-1] if found else '?'} instances{capped}){ratio}; {load()}", flush=True)
    from napari_autosam.sam.fast_decoder import FAST_DECODER_ENV

    before = InstanceOptions(source="h", min_confidence=0.0, max_prompts=None, batch_size=32)
    after = InstanceOptions(source="h")
    runs = [("untrained g", None, "before", before, True), ("untrained g", None, "after", after, True),
            ("nuclei g", threshold_model(0.35), "before", before, True),
            ("nuclei g", threshold_model(0.35), "after, stock decoder forward", after, False),
            ("nuclei g", threshold_model(0.35), "after", after, True)]
    for label, model, name, options, fast in runs:
        if name == "before" and not before_runs:
            continue
        if model is None:
            options = InstanceOptions(source="autosam", min_confidence=options.min_confidence,
                                      max_prompts=options.max_prompts, batch_size=options.batch_size)
        seg = Segmenter(sam, model, instance_options=options)
        run(seg.segment(image))  # embedding cached: what follows is g, the decoder and the instance work
        os.environ[FAST_DECODER_ENV] = "1" if fast else "0"
        t, result = timed(lambda seg=seg: run(seg.segment(image, mode="instances")))
        os.environ.pop(FAST_DECODER_ENV)
        n = int(result.instances.max())
        capped = "; capped" if any("capped" in m for m in result.messages) else ""
        print(f"   {label}, {name}: {t:.1f} s for one tile, {n} instances, {1000 * t / max(n, 1):.0f} ms per "
              f"object{capped}; {load()}", flush=True)


if __name__ == "__main__":
    main()
