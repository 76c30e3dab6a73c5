"""Per-class Dice of a class model trained with the CLI's defaults on synthetic classes, on a test split.

Usage::

    python benchmarks/bench_classes.py                        # shape-only set: round vs elongated, 8 + 3 + 3 of 256²
    python benchmarks/bench_classes.py --set textures --classes 3 --size 128
    python benchmarks/bench_classes.py --steps 80 --h-steps 60 --time-limit 0   # a shorter, fixed budget

Three disjoint splits of other seeds: ``--train`` images to train on,
``--val`` images the run validates on (its best state is picked there) and
``--test`` images that are only scored at the end (the figures printed).
The shape-only set (:func:`napari_autosam.data.synthetic_classes.make_shape_image`)
has flat disks and flat ellipses of the same area, stain and brightness:
only the outline tells them apart.  The training settings are those of
``napari-autosam train --num-classes N`` (tiny SAM, CPU, its time limit)
unless a flag overrides them.  It prints the untrained model's per-class
Dice next to the trained one's on the test split, the training time and the
load average it ran under.
"""

from __future__ import annotations

import argparse
import os
import time


def _datasets(args):
    from napari_autosam.data.synthetic_classes import (
        class_names,
        make_class_dataset,
        shape_class_names,
    )

    shape = (args.size, args.size)
    kwargs = {"shape_only": True} if args.set == "shapes" else {}
    classes = 2 if args.set == "shapes" else args.classes
    names = shape_class_names() if args.set == "shapes" else class_names(classes)
    splits = [make_class_dataset(n, shape, num_classes=classes, seed=seed, **kwargs)
              for n, seed in ((args.train, 0), (args.val, 1000), (args.test, 2000))]
    return list(names), splits


def _config(args, classes):
    from napari_autosam.jobs.defaults import DEFAULT_TIME_LIMIT
    from napari_autosam.training import TrainConfig

    limit = DEFAULT_TIME_LIMIT if args.time_limit is None else (args.time_limit or None)
    return TrainConfig(steps=args.steps, h_steps=args.h_steps, time_limit=limit, device="cpu",
                       classes=tuple(classes.to_metadata()))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("shapes", "textures"), default="shapes",
                        help="shape-only round/elongated (default) or the textured round/ring/rod set")
    parser.add_argument("--classes", type=int, default=3, choices=(2, 3), help="classes of the textured set")
    parser.add_argument("--train", type=int, default=8, help="training images")
    parser.add_argument("--val", type=int, default=3, help="validation images (the best state is picked here)")
    parser.add_argument("--test", type=int, default=3, help="test images (reported)")
    parser.add_argument("--size", type=int, default=256, help="image side")
    parser.add_argument("--steps", type=int, default=None, help="g steps (default: the CLI's)")
    parser.add_argument("--h-steps", type=int, default=None, help="h steps (default: the CLI's)")
    parser.add_argument("--time-limit", type=float, default=None, help="seconds (default: the CLI's; 0: none)")
    args = parser.parse_args(argv)
    os.environ.setdefault("NAPARI_AUTOSAM_DEVICE", "cpu")

    import tempfile

    import torch

    from napari_autosam.class_sets import make_classes
    from napari_autosam.progress import run
    from napari_autosam.sam.registry import load_sam
    from napari_autosam.training import evaluate, samples_from_arrays, train
    from napari_autosam.training.engine import initial_model

    torch.set_num_threads(2)
    sam = run(load_sam("tiny", device="cpu"))
    names, splits = _datasets(args)
    classes = make_classes(names, "synthetic")
    train_set, val_set, test_set = (samples_from_arrays(*split, classes=classes) for split in splits)
    config = _config(args, classes)
    start = initial_model(config, device="cpu")
    start.metadata["classes"] = classes.to_metadata()
    before = run(evaluate(sam, start, test_set)).to_dict()
    load0 = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        def shown(event):
            if "val_dice" in event.message:
                print(f"  {event.message}", flush=True)

        result = run(train(sam, train_set, config=config, out=os.path.join(tmp, "m.safetensors"),
                           val_samples=val_set), on_progress=shown)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = run(evaluate(sam, result.model, test_set)).to_dict()
    load1 = os.getloadavg()[0]
    ended = result.model.metadata.get("ended")

    print(f"set: {args.set} ({', '.join(names)}); {args.train} training, {args.val} validation, {args.test} test "
          f"images of {args.size}²; the CLI's settings{'' if args.steps is None else f', g {args.steps} steps'}"
          f"{'' if args.h_steps is None else f', h {args.h_steps} steps'}; tiny SAM, CPU")
    print(f"training: {wall:.0f} s wall, {cpu:.0f} s CPU (encoding included), ended {ended}; "
          f"load average {load0:.1f} → {load1:.1f}")
    print(f"{'class':<10} {'AutoSAM Dice (test)':>22} {'h Dice (test)':>22}")
    print(f"{'':<10} {'untrained → trained':>22} {'untrained → trained':>22}")
    for b, a in zip(before["per_class"], after["per_class"]):
        if a.get("absent"):
            print(f"{a['name']:<10} absent from the test masks (left out of the mean)")
            continue
        print(f"{a['name']:<10} {b['dice_autosam']:>10.3f} → {a['dice_autosam']:<9.3f} "
              f"{b['dice_h']:>10.3f} → {a['dice_h']:<9.3f}")
    print(f"{'mean':<10} {before['autosam']['dice']:>10.3f} → {after['autosam']['dice']:<9.3f} "
          f"{before['h']['dice']:>10.3f} → {after['h']['dice']:<9.3f}")


if __name__ == "__main__":
    main()
