"""Does training work?  Dice/IoU on held-out synthetic nuclei before and after a few minutes of CPU training.

Usage::

    python benchmarks/bench_training_quality.py [--sam tiny] [--train 16] [--val 4] [--test 8]
        [--size 256] [--stain fluorescence|he] [--epochs 20] [--h-epochs 10] [--device auto]

Synthetic nuclei images (``napari_autosam.data.synthetic``) with exact
masks: a training set, a validation set (model selection, early stopping)
and a held-out test set drawn with a different seed.  The untrained model
(the same seeded initial g and h that training starts from) and the
trained one are both scored on the test set with
:func:`napari_autosam.training.evaluate`: per image, threshold 0.5 in the
image's own frame, then averaged.  Everything else uses the
:class:`~napari_autosam.training.TrainConfig` defaults for the device (on a
CPU: ``hardnet_small`` at 256², batch 4, identity + horizontal-flip
embeddings, Adam 3e-4).  The tiny SAM has fixed random weights, so its mask
decoder has to be driven entirely by g's dense prompt.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from napari_autosam.data.synthetic import make_nuclei_dataset
from napari_autosam.progress import run
from napari_autosam.sam.cache import EmbeddingCache
from napari_autosam.sam.registry import load_sam
from napari_autosam.training import TrainConfig, evaluate, initial_model, samples_from_arrays, train


def _samples(n: int, size: int, seed: int, stain: str):
    pairs = make_nuclei_dataset(n, (size, size), seed=seed, stain=stain)
    return samples_from_arrays([p[0] for p in pairs], [p[1] for p in pairs], names=[f"s{seed}_{i:03d}" for i in range(n)])


def _row(label: str, evaluation) -> str:
    h = evaluation.h
    return (f"{label:<10} {evaluation.autosam.mean_dice:>13.3f} {evaluation.autosam.mean_iou:>12.3f} "
            f"{h.mean_dice:>7.3f} {h.mean_iou:>7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sam", default="tiny")
    parser.add_argument("--device", default=None)
    parser.add_argument("--train", type=int, default=16)
    parser.add_argument("--val", type=int, default=4)
    parser.add_argument("--test", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--stain", default="fluorescence", choices=("fluorescence", "he"))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--h-epochs", type=int, default=10)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    sam = run(load_sam(args.sam, device=args.device))
    device = next(sam.parameters()).device
    config = TrainConfig(epochs=args.epochs, h_epochs=args.h_epochs, patience=args.patience, seed=args.seed)
    resolved = config.resolved(device)
    print(f"SAM {args.sam} on {device} (torch threads {torch.get_num_threads()}); g = {resolved.generator} "
          f"at {resolved.input_size}², batch {resolved.batch_size}, lr {resolved.lr}, variants {resolved.variants}")
    train_set = _samples(args.train, args.size, 1000 + args.seed, args.stain)
    val_set = _samples(args.val, args.size, 2000 + args.seed, args.stain)
    test_set = _samples(args.test, args.size, 3000 + args.seed, args.stain)
    print(f"{args.stain} {args.size}² images: {len(train_set)} train, {len(val_set)} validation, {len(test_set)} test")
    cache = EmbeddingCache(sam, max_items=4 * (args.train + args.val + args.test))

    before = run(evaluate(sam, initial_model(config, device=device), test_set, cache=cache))
    last = {"epoch": None}

    def on_progress(event):
        epoch = event.metrics.get("epoch")
        if event.phase in ("train_g", "train_h") and "val_dice" in event.message and epoch != last["epoch"]:
            last["epoch"] = epoch
            print(f"  [{time.perf_counter() - t0:6.0f} s] {event.message}", flush=True)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(train(sam, train_set, config=config, val_samples=val_set, cache=cache,
                           out=f"{tmp}/model.safetensors"), on_progress)
    seconds = time.perf_counter() - t0
    after = run(evaluate(sam, result.model, test_set, cache=cache))
    ended = result.model.metadata["ended"]
    metrics = result.metrics
    print(f"\ntraining took {seconds:.0f} s ({seconds / 60:.1f} min) including encoding; ended g: {ended['g']} "
          f"(best epoch {metrics.get('best_epoch_g')}), h: {ended['h']} (best epoch {metrics.get('best_epoch_h')})")
    print(f"\nheld-out test set ({len(test_set)} images): mean per image, threshold 0.5")
    print(f"{'model':<10} {'AutoSAM Dice':>13} {'AutoSAM IoU':>12} {'h Dice':>7} {'h IoU':>7}")
    print(_row("untrained", before))
    print(_row("trained", after))


if __name__ == "__main__":
    main()
