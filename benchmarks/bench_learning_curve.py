"""Learning curves: held-out Dice of AutoSAM and h(g(I)) against the number of corrections and training time.

Usage::

    python benchmarks/bench_learning_curve.py --quick            # a few CPU-minutes: 1, 4, 16 corrections, short budget
    python benchmarks/bench_learning_curve.py                    # 1, 2, 4, 8, 16 corrections, command-line defaults
    python benchmarks/bench_learning_curve.py --data stardist    # real nuclei (1, 2, 4, 8, 12 corrections)
    python benchmarks/bench_learning_curve.py --quick --before   # the same with the earlier training recipe

Each count N trains once, with the ``napari-autosam train`` command line's
defaults (``--quick``: a 60 + 40 step budget and no time limit), the tiny
SAM and the CPU, on N corrections, and scores held-out images the way
``evaluate`` does.  The run's validations also score the held-out images,
off the clock, which gives the curve against training time; validations
come every 10 steps here (the command line's interval is one epoch, at most
30 per stage), which can change where early stopping ends a stage.  Data (see
``bench_learning.py``): ``synthetic``, N 256² synthetic fluorescence nuclei
images and 8 held-out ones from another seed; ``stardist``, N 128² crops of
three quadrants of the nuclei image shipped in the ``stardist`` wheel, the
fourth quadrant held out (twelve crops at most).

``--before`` uses, instead of ``--quick``'s budget, the options that bring back the earlier recipe as far as
options can: 50 epochs with no step floor, the affine warp of cached
embeddings, the paper's loss on the decoder's logits (``--logit-gain 1``),
no time limit.  (The other earlier defect, the shifted targets, was fixed in
code and cannot be switched back.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_learning import _load, stardist_sets, synthetic_sets, train_once  # noqa: E402

QUICK = "--steps 60 --h-steps 40 --min-steps 60 --time-limit 0"
BEFORE = "--epochs 50 --min-steps 0 --affine --logit-gain 1 --time-limit 0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=("synthetic", "stardist"), default="synthetic")
    parser.add_argument("--counts", default=None, help="comma-separated numbers of corrections")
    parser.add_argument("--quick", action="store_true", help="1, 4, 16 corrections and a short step budget")
    parser.add_argument("--before", action="store_true", help="the earlier training recipe (see the docstring)")
    parser.add_argument("--extra", default="", help="more CLI options for every run")
    parser.add_argument("--data-cache", default=os.path.join(tempfile.gettempdir(), "napari-autosam-bench-data"))
    args = parser.parse_args()

    import torch

    from napari_autosam.progress import run
    from napari_autosam.sam.registry import load_sam

    biggest = 12 if args.data == "stardist" else 16
    default = f"1,4,{biggest}" if args.quick else f"1,2,4,8,{biggest}"
    counts = [min(int(c), biggest) for c in (args.counts or default).split(",")]
    budget = BEFORE if args.before else (QUICK if args.quick else "")  # --before brings its own epoch budget
    extra = budget.split() + args.extra.split()
    torch.manual_seed(0)
    sam = run(load_sam("tiny", device="cpu"))
    print(f"tiny SAM on the CPU, torch threads {torch.get_num_threads()}, {os.cpu_count()} cores; {_load()}")
    print(f"data {args.data}; recipe {'before' if args.before else 'now'}; options {' '.join(extra) or '(defaults)'}")
    print(f"{'N':>3} {'h(g(I))':>8} {'AutoSAM':>8} {'Otsu':>6} {'train s':>8} {'CPU s':>6}  steps g/h   load")
    for n in counts:
        data = stardist_sets(Path(args.data_cache), n) if args.data == "stardist" else synthetic_sets(n)
        # the held-out images are scored at every validation: every 10 steps keeps that cost small
        r = train_once(sam, data, extra, timeline=True, overrides={"val_every": 10})
        steps = r["steps"]
        print(f"{n:>3} {r['h']:>8.3f} {r['autosam']:>8.3f} {r['otsu']:>6.3f} {r['seconds_training']:>8.0f} "
              f"{r['cpu_training']:>6.0f}  {steps.get('g', 0)}/{steps.get('h', 0)}  [{_load()}]", flush=True)
        cells = ", ".join(f"{t:.0f}s {a:.2f}/{h:.2f}" for t, a, h in r["timeline"])
        print(f"    held-out AutoSAM/h by training seconds: {cells}", flush=True)


if __name__ == "__main__":
    main()
