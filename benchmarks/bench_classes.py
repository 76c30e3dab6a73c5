"""Per-class Dice of a class model after a short CPU training on synthetic shapes (round, ring, rod).

Usage::

    python benchmarks/bench_classes.py                       # 6 training images of 96², 80 g steps, 60 h steps
    python benchmarks/bench_classes.py --train 8 --steps 300 --h-steps 200 --size 128 --input-size 128

The classes of :mod:`napari_autosam.data.synthetic_classes` have the same
stain and brightness and differ by shape and texture.  The run trains g, the
class heads and h with the training engine (tiny SAM, CPU, ``hardnet_small``
at ``--input-size``), then scores held-out images of another seed the way
``evaluate`` does (fused label map, argmax, per-class Dice/IoU, mean over
images).  It prints the untrained model's scores next to the trained one's,
the training time (wall and process CPU) and the load average it ran under.
"""

from __future__ import annotations

import argparse
import os
import time


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=6, help="training images")
    parser.add_argument("--val", type=int, default=4, help="held-out images (another seed)")
    parser.add_argument("--size", type=int, default=96, help="image side")
    parser.add_argument("--steps", type=int, default=80, help="g steps")
    parser.add_argument("--h-steps", type=int, default=60, help="h steps")
    parser.add_argument("--input-size", type=int, default=96, help="g's input side")
    parser.add_argument("--classes", type=int, default=3, choices=(2, 3))
    parser.add_argument("--val-every", type=int, default=20, help="steps between validations")
    args = parser.parse_args(argv)
    os.environ.setdefault("NAPARI_AUTOSAM_DEVICE", "cpu")

    import tempfile

    import torch

    from napari_autosam.class_sets import make_classes
    from napari_autosam.data.synthetic_classes import class_names, make_class_dataset
    from napari_autosam.progress import run
    from napari_autosam.sam.registry import load_sam
    from napari_autosam.training import TrainConfig, evaluate, samples_from_arrays, train
    from napari_autosam.training.engine import initial_model

    torch.set_num_threads(1)
    sam = run(load_sam("tiny", device="cpu"))
    classes = make_classes(list(class_names(args.classes)), "synthetic")
    shape = (args.size, args.size)
    images, masks = make_class_dataset(args.train, shape, num_classes=args.classes, seed=0)
    val_images, val_masks = make_class_dataset(args.val, shape, num_classes=args.classes, seed=1000)
    samples = samples_from_arrays(images, masks, classes=classes)
    held_out = samples_from_arrays(val_images, val_masks, classes=classes)
    config = TrainConfig(generator="hardnet_small", input_size=args.input_size, steps=args.steps,
                         h_steps=args.h_steps, min_steps=0, batch_size=4, patience=None, val_every=args.val_every,
                         variants=("identity",), classes=tuple(classes.to_metadata()), device="cpu")
    start = initial_model(config, device="cpu")
    start.metadata["classes"] = classes.to_metadata()
    before = run(evaluate(sam, start, held_out)).to_dict()
    load0 = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        def shown(event):
            if "val_dice" in event.message:
                print(f"  {event.message}", flush=True)

        result = run(train(sam, samples, config=config, out=os.path.join(tmp, "m.safetensors"), val_samples=held_out),
                     on_progress=shown)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    after = run(evaluate(sam, result.model, held_out)).to_dict()
    load1 = os.getloadavg()[0]

    print(f"classes: {', '.join(classes.names)}; {args.train} training, {args.val} held-out images of {args.size}²; "
          f"g {args.steps} steps, h {args.h_steps} steps, g input {args.input_size}, tiny SAM, CPU")
    print(f"training: {wall:.0f} s wall, {cpu:.0f} s CPU (encoding included); load average {load0:.1f} → {load1:.1f}")
    print(f"{'class':<8} {'AutoSAM Dice':>22} {'h Dice':>22}")
    print(f"{'':<8} {'untrained → trained':>22} {'untrained → trained':>22}")
    for b, a in zip(before["per_class"], after["per_class"]):
        print(f"{a['name']:<8} {b['dice_autosam']:>10.3f} → {a['dice_autosam']:<9.3f} "
              f"{b['dice_h']:>10.3f} → {a['dice_h']:<9.3f}")
    print(f"{'mean':<8} {before['autosam']['dice']:>10.3f} → {after['autosam']['dice']:<9.3f} "
          f"{before['h']['dice']:>10.3f} → {after['h']['dice']:<9.3f}")


if __name__ == "__main__":
    main()
