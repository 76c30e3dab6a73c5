"""Cost of training with cached SAM embeddings, against re-encoding the image every step.

Usage::

    python benchmarks/bench_training.py [--device auto|cpu|cuda|mps] [--repeats 3] [--sams tiny,vit_b]
                                        [--images 20] [--size 512] [--skip-vit-b] [--skip-epochs] [--cpu-time]

Part 1 times one training step of g (forward, frozen mask decoder, BCE +
Dice, backward, Adam) on one image whose SAM embedding is cached — with the
fast dense-prompt decoder the training uses and with segment-anything's
stock decoder forward, interleaved — and the same step when the image goes
through the SAM's image encoder first, and prints the ratios.  Part 2 runs the real ``train()`` generator on
``--images`` synthetic nuclei images of ``--size``² for two epochs with the
tiny SAM and with ViT-B, and reports the one-off encoding time apart from
the seconds per epoch.  SAMs have random weights (nothing is downloaded):
the cost does not depend on the values.  The prompt generator follows the
device defaults of :class:`~napari_autosam.training.TrainConfig`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from napari_autosam.data.synthetic import make_nuclei_dataset
from napari_autosam.device import pick_device
from napari_autosam.progress import Stopwatch, run
from napari_autosam.sam.embedding import embed_images
from napari_autosam.sam.fast_decoder import FAST_DECODER_ENV
from napari_autosam.sam.registry import SAM_BUILDERS, freeze
from napari_autosam.training import TrainConfig, initial_model, samples_from_arrays, train
from napari_autosam.training.prepared import prepare
from napari_autosam.training.stages import Trainer, _optimise


def build_sam(name: str, device: torch.device):
    torch.manual_seed(0)
    sam = freeze(SAM_BUILDERS[name]())
    sam.variant = name  # type: ignore[attr-defined]
    return sam.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_times(sam, samples, config: TrainConfig, device: torch.device, repeats: int,
               clock=time.perf_counter) -> dict[str, float]:
    """Median seconds of one image's cached step (fast and stock decoder), the encoder and a re-encoding step.

    ``clock`` is ``time.perf_counter`` (wall) or ``time.process_time`` (CPU
    seconds: steadier on a shared machine, comparable with one thread).
    Returns ``{"cached", "cached_stock", "g", "encoder", "reencoding"}`` (``g``: g's
    forward, backward and Adam alone, the step's floor); the
    re-encoding step is the encoder followed by the (fast) cached step.
    """
    import os

    from napari_autosam.models.autosam import AutoSAM
    from napari_autosam.sam.cache import EmbeddingCache

    config = config.resolved(device)
    start = initial_model(config, device=device)
    model = AutoSAM(sam, start.prompt_generator, start.surrogate)
    trainer = Trainer(model, config, device, None)
    data = run(prepare(samples[:1], ("identity",), cache=EmbeddingCache(sam, max_items=1),
                       input_size=config.input_size, clock=Stopwatch(1)))
    optimizer = torch.optim.Adam(model.prompt_generator.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(0)

    def cached_step(stock: bool = False) -> float:
        os.environ[FAST_DECODER_ENV] = "0" if stock else "1"
        _sync(device)
        t0 = clock()
        model.train()
        tensors = data.batch([0], [0], device=device, augment=config.augment, generator=generator)
        _optimise(trainer._g_loss(*tensors), optimizer, None)
        _sync(device)
        os.environ.pop(FAST_DECODER_ENV)
        return clock() - t0

    def encode() -> float:
        _sync(device)
        t0 = clock()
        run(embed_images(sam, [samples[0].image]))
        _sync(device)
        return clock() - t0

    def g_alone() -> float:
        """g's own share of a step: forward, backward (of a stand-in loss) and Adam, no decoder."""
        _sync(device)
        t0 = clock()
        model.train()
        g_input = data.batch([0], [0], device=device, augment=config.augment, generator=generator)[0]
        _optimise(model.prompt_generator(g_input).square().mean(), optimizer, None)
        _sync(device)
        return clock() - t0

    cached_step(), cached_step(stock=True), g_alone()  # warm-up
    encode()
    n = max(3, repeats)
    fast, stock, g_only = [], [], []
    for _ in range(n):  # interleaved, so a change of load hits both alike
        fast.append(cached_step())
        stock.append(cached_step(stock=True))
        g_only.append(g_alone())
    # A re-encoding step is the encoder followed by the same step, timed back to back.
    pairs = [(encode(), cached_step()) for _ in range(repeats)]
    return {"cached": statistics.median(fast), "cached_stock": statistics.median(stock), "g": statistics.median(g_only),
            "encoder": statistics.median(e for e, _ in pairs),
            "reencoding": statistics.median(e + s for e, s in pairs)}


def epoch_times(sam, samples, config: TrainConfig) -> dict:
    """Run train() for its epochs; encoding seconds, seconds per g epoch and per h epoch."""
    marks: dict[str, list[float]] = {"encode": [], "train_g": [], "train_h": []}

    def on_progress(event):
        if event.phase == "encode" and event.step == event.total:
            marks["encode"].append(event.elapsed)
        elif event.phase in ("train_g", "train_h") and "val_dice" in event.message:
            marks[event.phase].append(event.elapsed)  # after each epoch's validation (epoch 0 first)

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run(train(sam, samples, config=config, out=f"{tmp}/model.safetensors"), on_progress)

    def per_epoch(times: list[float]) -> float:
        return float(np.mean(np.diff(times))) if len(times) > 1 else float("nan")

    return {"encode": marks["encode"][-1], "g": per_epoch(marks["train_g"]), "h": per_epoch(marks["train_h"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--sams", default="tiny,vit_b", help="comma-separated SAM variants (random weights)")
    parser.add_argument("--skip-vit-b", action="store_true", help="tiny SAM only (ViT-B encodes ~10-15 s/image on a CPU)")
    parser.add_argument("--skip-epochs", action="store_true", help="only the step comparison")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time steps in CPU seconds (steadier on a shared machine; use with 1 thread)")
    args = parser.parse_args()
    device = pick_device(args.device)
    config = TrainConfig(epochs=args.epochs, h_epochs=args.epochs, min_steps=0, patience=None, variants=("identity",))
    resolved = config.resolved(device)
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}; "
          f"g = {resolved.generator} at {resolved.input_size}², batch {resolved.batch_size}")
    pairs = make_nuclei_dataset(args.images, (args.size, args.size), seed=0, stain="he")
    samples = samples_from_arrays([p[0] for p in pairs], [p[1] for p in pairs])
    sams = ["tiny"] if args.skip_vit_b else args.sams.split(",")

    print(f"\none training step on one {args.size}² image (median of {args.repeats})")
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(f"{'SAM':<6} {'stock step s':>13} {'cached step s':>14} {'encoder s':>10} {'re-encoding step s':>19} "
          f"{'stock/fast':>11} {'ratio':>8}  ({'CPU' if args.cpu_time else 'wall'} seconds)")
    for name in sams:
        sam = build_sam(name, device)
        t = step_times(sam, samples, config, device, args.repeats, clock)
        print(f"{name:<6} {t['cached_stock']:>13.3f} {t['cached']:>14.3f} {t['encoder']:>10.2f} "
              f"{t['reencoding']:>19.2f} {t['cached_stock'] / t['cached']:>10.2f}× "
              f"{t['reencoding'] / t['cached']:>7.1f}×  load {os.getloadavg()[0]:.1f}", flush=True)
    if args.skip_epochs:
        return

    n_val = max(1, round(0.2 * args.images))
    print(f"\ntrain(): {args.images} images of {args.size}² ({args.images - n_val} train, {n_val} validation), "
          f"{args.epochs} epochs per stage, one cached variant")
    print(f"{'SAM':<6} {'encode s (once)':>16} {'per image':>10} {'g epoch s':>10} {'h epoch s':>10}")
    for name in sams:
        sam = build_sam(name, device)
        t = epoch_times(sam, samples, config)
        print(f"{name:<6} {t['encode']:>16.1f} {t['encode'] / args.images:>10.2f} {t['g']:>10.1f} {t['h']:>10.1f}",
              flush=True)
    print("\n(g epoch = its training steps plus validation; h epoch = g forward without gradients plus h)")


if __name__ == "__main__":
    main()
