"""Depth adapters against slice-wise AutoSAM: the cost of a step, and what depth context buys.

Usage::

    python benchmarks/bench_depth.py [--repeats 3] [--window 5] [--steps-2d 150] [--depth-steps 40]
                                     [--input-size 128] [--skip-quality]

Part 1 times one training step on a window of ``--window`` slices with the
tiny SAM on the CPU: the cached mode (g, SAM's frozen mask decoder and h on
embeddings encoded once; BCE + Dice, backward, Adam) against the
depth-adapter mode (the same, but the window first goes through SAM's image
encoder with the adapters, and the backward pass runs through it), and the
one-off cost of encoding the window for the cached mode.  Ratios are
measured in one run.

Part 2 trains on synthetic stacks where a single slice is ambiguous
(:func:`~napari_autosam.data.synthetic.make_depth_stack`: tubes through
every slice are foreground, flat beads that look the same in their middle
slice are not): a slice-wise AutoSAM model (cached mode, ``--steps-2d``
steps), then the same model warm-started with depth adapters
(``--depth-steps`` steps), and as a control the slice-wise model trained on
for ``--depth-steps`` more cached steps.  It prints, on held-out stacks, the
mean per-slice Dice and the mean Dice between consecutive slices' masks
next to the ground truth's.  Report ``uptime`` with the figures: the
machine may be shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_autosam.data.synthetic import make_depth_stack
from napari_autosam.inference import Segmenter
from napari_autosam.losses import bce_dice_loss, dice
from napari_autosam.models.autosam import AutoSAM
from napari_autosam.progress import run
from napari_autosam.sam.adapters import build_adapters
from napari_autosam.sam.embedding import SAM_INPUT_SIZE, to_padded_frame
from napari_autosam.sam.registry import load_sam
from napari_autosam.training import TrainConfig, initial_model, samples_from_arrays, train
from napari_autosam.training.depth_stage import inter_slice_dice, new_optimizer, train_step, volumes_from_arrays, window_tensors


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_costs(sam, window: int, input_size: int, repeats: int) -> dict:
    """Median seconds of a cached step, a depth-adapter step and encoding one window (tiny SAM, CPU)."""
    config = TrainConfig(generator="hardnet_small", input_size=input_size)
    start = initial_model(config, device="cpu")
    model = AutoSAM(sam, start.prompt_generator, start.surrogate)
    adapters = build_adapters(sam, "depth_mlp", window)
    image, mask = make_depth_stack(depth=window, shape=(64, 64), seed=0)
    volume = volumes_from_arrays([image], [mask])[0]
    channels, targets = window_tensors(volume, 0, window, "cpu")
    with torch.no_grad():
        embedding = sam.image_encoder(to_padded_frame(channels, SAM_INPUT_SIZE))
    g_input = to_padded_frame(channels, input_size)
    optimizer = torch.optim.Adam([*model.prompt_generator.parameters(), *model.surrogate.parameters()], lr=3e-4)

    def cached_step():
        model.train()
        prompt = model.prompt_generator(g_input)
        loss = bce_dice_loss(model.decode(embedding, prompt), targets)
        loss = loss + bce_dice_loss(model.surrogate(prompt.detach()), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def encode():
        with torch.no_grad():
            sam.image_encoder(to_padded_frame(channels, SAM_INPUT_SIZE))

    depth_optimizer = new_optimizer(model, adapters, config)
    return {"cached": _median_seconds(cached_step, repeats), "encode": _median_seconds(encode, repeats),
            "depth": _median_seconds(lambda: train_step(model, adapters, volume, 0, depth_optimizer, "cpu"), repeats)}


def _scores(sam, model, stacks) -> dict:
    seg = Segmenter(sam, model)
    slice_dice, pred_consistency, true_consistency = [], [], []
    for image, mask in stacks:
        res = run(seg.segment(image, stack=True))
        slice_dice += [dice(res.autosam_mask[z], mask[z]) for z in range(len(mask))]
        pred_consistency.append(inter_slice_dice(res.autosam_mask))
        true_consistency.append(inter_slice_dice(mask))
    return {"dice": float(np.mean(slice_dice)), "consistency": float(np.mean(pred_consistency)),
            "truth_consistency": float(np.mean(true_consistency))}


def quality(sam, window: int, input_size: int, steps_2d: int, depth_steps: int, folder: Path) -> dict:
    """Train slice-wise, then depth adapters (and a slice-wise control) from it; scores on held-out stacks."""
    make = dict(depth=10, shape=(64, 64))
    train_stacks = [make_depth_stack(seed=s, **make) for s in range(3)]
    val_stack = make_depth_stack(seed=9, **make)
    test_stacks = [make_depth_stack(seed=s, **make) for s in (10, 11)]
    samples = samples_from_arrays([s for s, _ in train_stacks], [m for _, m in train_stacks])
    val = samples_from_arrays([val_stack[0]], [val_stack[1]])
    base = TrainConfig(generator="hardnet_small", input_size=input_size, h_steps=0, joint=True, patience=None,
                       min_steps=0, device="cpu")
    out, seconds = {}, {}
    clock = time.perf_counter()
    flat = run(train(sam, samples, config=dataclasses.replace(base, steps=steps_2d), val_samples=val,
                     out=folder / "slice.safetensors"))
    seconds["slice-wise"] = time.perf_counter() - clock
    out["slice-wise"] = _scores(sam, flat.model, test_stacks)
    clock = time.perf_counter()
    more = run(train(sam, samples, config=dataclasses.replace(base, steps=depth_steps), init=flat.path,
                     val_samples=val, out=folder / "slice_more.safetensors"))
    seconds["slice-wise + more cached steps"] = time.perf_counter() - clock
    out["slice-wise + more cached steps"] = _scores(sam, more.model, test_stacks)
    clock = time.perf_counter()
    depth_config = dataclasses.replace(base, steps=depth_steps, depth_adapters=True, depth_window=window,
                                       val_every=max(1, depth_steps // 4))
    deep = run(train(sam, volumes_from_arrays([s for s, _ in train_stacks], [m for _, m in train_stacks]),
                     config=depth_config, init=flat.path, val_samples=volumes_from_arrays([val_stack[0]], [val_stack[1]]),
                     out=folder / "depth.safetensors"))
    seconds["slice-wise + depth adapters"] = time.perf_counter() - clock
    out["slice-wise + depth adapters"] = _scores(sam, deep.model, test_stacks)
    return {"scores": out, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--input-size", type=int, default=128)
    parser.add_argument("--steps-2d", type=int, default=150)
    parser.add_argument("--depth-steps", type=int, default=40)
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min average), torch threads {torch.get_num_threads()}")
    sam = run(load_sam("tiny", device="cpu"))
    costs = step_costs(sam, args.window, args.input_size, args.repeats)
    print(f"tiny SAM, CPU, window of {args.window} slices at 64², g hardnet_small at {args.input_size}²:")
    print(f"  cached step        {costs['cached']:.2f} s")
    print(f"  encode the window  {costs['encode']:.2f} s (once per training picture in the cached mode)")
    print(f"  depth-adapter step {costs['depth']:.2f} s = {costs['depth'] / costs['cached']:.1f}× a cached step")
    if not args.skip_quality:
        with tempfile.TemporaryDirectory() as tmp:
            result = quality(sam, args.window, args.input_size, args.steps_2d, args.depth_steps, Path(tmp))
        print(f"held-out stacks (2 × 10 slices of 64², tubes vs beads); steps: {args.steps_2d} slice-wise, "
              f"then {args.depth_steps} more")
        for name, s in result["scores"].items():
            print(f"  {name:32s} slice Dice {s['dice']:.3f}  consecutive-slice Dice {s['consistency']:.3f} "
                  f"(truth {s['truth_consistency']:.3f})  training {result['seconds'][name]:.0f} s")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
