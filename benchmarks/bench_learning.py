"""Learning curves: held-out Dice of AutoSAM, h(g(I)) and a global Otsu threshold against corrections and time.

Usage::

    python benchmarks/bench_learning.py goal                 # the issue's check: 3 quadrants train, 1 held out
    python benchmarks/bench_learning.py curve --data stardist --counts 1,2,4,8,12
    python benchmarks/bench_learning.py curve --data synthetic --counts 1,2,4,8,16
    python benchmarks/bench_learning.py ablate --data stardist --configs default,none,glas,affine,joint

Every run trains with the ``napari-autosam train`` command line's defaults
(the options are parsed by the CLI's own parser; ``--extra`` adds options),
the tiny SAM, on the CPU, and scores the held-out images the way
``evaluate`` does (per image, threshold 0.5, mean).  Otsu is one global
threshold per held-out image, computed on that image itself (a strong
baseline for fluorescence nuclei).

Data:

* ``stardist``: the 512² fluorescence nuclei image and its labels that the
  ``stardist`` package ships in its wheel (``stardist/data/images/img2d.tif``,
  ``mask2d.tif``; from the 2018 Data Science Bowl).  The wheel is fetched at run
  time with ``pip download --no-deps stardist==0.9.2`` into ``--data-cache``
  and the two files are read out of it; nothing is installed or committed.
  The bottom-right 256² quadrant is always held out.  ``goal`` trains on the
  other three quadrants; ``curve`` trains on N of the twelve 128² crops of
  those quadrants (so at most 12 corrections of real data).
* ``synthetic``: ``napari_autosam.data.synthetic`` fluorescence nuclei, 256²;
  N training images, 8 held-out images from another seed.

Times: ``train s`` is wall-clock training (encoding excluded), ``CPU s`` the
process CPU time of training, which on a busy shared machine is the better
guide to what an idle one needs (with one torch thread, idle wall ≈ CPU).
Under load pass ``--extra "--time-limit 0"`` so the CLI's wall-clock limit
does not cut the run short.

Against time: one run's validations are instrumented to also score the
held-out images (their cost is taken off the clock), giving held-out Dice
after t seconds of training from a single run.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

STARDIST = "stardist==0.9.2"


# --- data ----------------------------------------------------------------------------------


def stardist_image(cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 512² uint16 nuclei image and its uint16 labels from the stardist wheel (downloaded once)."""
    import tifffile

    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("stardist-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", STARDIST, "-d", str(cache)],
                       check=True)
        wheels = sorted(cache.glob("stardist-*.whl"))
    with zipfile.ZipFile(wheels[-1]) as wheel:
        image = tifffile.imread(io.BytesIO(wheel.read("stardist/data/images/img2d.tif")))
        labels = tifffile.imread(io.BytesIO(wheel.read("stardist/data/images/mask2d.tif")))
    return image, labels


def quadrants(array: np.ndarray) -> list[np.ndarray]:
    h, w = array.shape[0] // 2, array.shape[1] // 2
    return [array[:h, :w], array[:h, w:], array[h:, :w], array[h:, w:]]


def stardist_sets(cache: Path, crops: int | None):
    """``(train images, train masks, test images, test masks)``; ``crops`` None: three whole quadrants."""
    image, labels = stardist_image(cache)
    qi, ql = quadrants(image), quadrants(labels)
    train_i, train_m = qi[:3], [m > 0 for m in ql[:3]]
    if crops is not None:
        pieces = [(q[y:y + 128, x:x + 128], m[y:y + 128, x:x + 128])
                  for q, m in zip(train_i, train_m) for y in (0, 128) for x in (0, 128)]
        order = np.random.default_rng(0).permutation(len(pieces))[:crops]
        train_i, train_m = [pieces[i][0] for i in order], [pieces[i][1] for i in order]
    return train_i, train_m, [qi[3]], [ql[3] > 0]


def synthetic_sets(n: int, size: int = 256):
    from napari_autosam.data.synthetic import make_nuclei_dataset

    train = make_nuclei_dataset(n, (size, size), seed=1000, stain="fluorescence")
    test = make_nuclei_dataset(8, (size, size), seed=3000, stain="fluorescence")
    return [p[0] for p in train], [p[1] > 0 for p in train], [p[0] for p in test], [p[1] > 0 for p in test]


def otsu_dice(images, masks) -> float:
    from skimage.filters import threshold_otsu

    from napari_autosam.losses import dice_iou

    scores = []
    for image, mask in zip(images, masks):
        gray = image.mean(-1) if image.ndim == 3 else image
        scores.append(dice_iou(gray > threshold_otsu(gray), mask)[0])
    return float(np.mean(scores))


# --- one run -------------------------------------------------------------------------------


def cli_config(extra: list[str]):
    """The TrainConfig that ``napari-autosam train`` builds from its defaults plus ``extra`` options."""
    import argparse as _argparse

    from napari_autosam.cli import train_command as cli_train

    parser = _argparse.ArgumentParser()
    cli_train.register(parser.add_subparsers())
    args = parser.parse_args(["train", "--images", "x", "--masks", "x", "--out", "x", "--sam", "tiny", *extra])
    return cli_train._config(args)


def _trainer_class():
    from napari_autosam.training.stages import Trainer

    return Trainer


def train_once(sam, data, extra: list[str], *, timeline: bool = False, overrides: dict | None = None) -> dict:
    """Train with CLI defaults (+ ``extra``, then TrainConfig ``overrides``) on ``data``; held-out Dice, seconds, timeline."""
    import dataclasses

    from napari_autosam.progress import run
    from napari_autosam.sam.cache import EmbeddingCache
    from napari_autosam.training import evaluate, samples_from_arrays, train

    train_i, train_m, test_i, test_m = data
    samples = samples_from_arrays(train_i, train_m, names=[f"c{i:02d}" for i in range(len(train_i))])
    test = samples_from_arrays(test_i, test_m, names=[f"t{i:02d}" for i in range(len(test_i))])
    cache = EmbeddingCache(sam, max_items=64)
    config = dataclasses.replace(cli_config(extra), **(overrides or {}))
    points, state = [], {"overhead": 0.0, "t0": None, "cpu0": None, "cpu_overhead": 0.0}
    trainer = _trainer_class()
    original = trainer.validate

    def validate(self, val):  # benchmark instrumentation: score the held-out images too, off the clock
        if state["t0"] is None:
            state["t0"], state["cpu0"] = time.perf_counter(), time.process_time()
        result = original(self, val)
        if timeline:
            t, c = time.perf_counter(), time.process_time()
            from napari_autosam.models.checkpoint import ModelCheckpoint

            model = ModelCheckpoint(self.model.prompt_generator, self.model.surrogate, {})
            ev = run(evaluate(sam, model, test, cache=cache))
            self.model.train(False)
            state["overhead"] += time.perf_counter() - t
            state["cpu_overhead"] += time.process_time() - c
            points.append((time.perf_counter() - state["t0"] - state["overhead"], ev.autosam.mean_dice, ev.h.mean_dice))
        return result

    def on_progress(event):
        if state["t0"] is None and event.phase.startswith("train"):
            state["t0"], state["cpu0"] = time.perf_counter(), time.process_time()

    trainer.validate = validate
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            result = run(train(sam, samples, config=config, cache=cache, out=f"{tmp}/m.safetensors"), on_progress)
            total = time.perf_counter() - t0
    finally:
        trainer.validate = original
    trained = (time.perf_counter() - state["t0"] - state["overhead"]) if state["t0"] else float("nan")
    cpu = (time.process_time() - state["cpu0"] - state["cpu_overhead"]) if state["t0"] else float("nan")
    ev = run(evaluate(sam, result.model, test, cache=cache))
    meta = result.model.metadata
    return {"autosam": ev.autosam.mean_dice, "h": ev.h.mean_dice, "otsu": otsu_dice(test_i, test_m),
            "seconds_total": total - state["overhead"], "seconds_training": trained, "cpu_training": cpu,
            "steps": {row["stage"]: row.get("step", row.get("epoch")) for row in result.history},
            "ended": meta["ended"],
            "validation": meta.get("validation"), "timeline": points, "n": len(samples)}


def _load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def _print_run(label: str, r: dict) -> None:
    print(f"{label:<22} {r['n']:>3} {r['otsu']:>6.3f} {r['h']:>7.3f} {r['autosam']:>8.3f} "
          f"{r['seconds_training']:>8.0f} {r['cpu_training']:>7.0f} {r['seconds_total']:>8.0f}  "
          f"{r['ended']} last steps {r['steps']}  [{_load()}]", flush=True)


def _header() -> None:
    print(f"{'run':<22} {'n':>3} {'Otsu':>6} {'h(g(I))':>7} {'AutoSAM':>8} {'train s':>8} {'CPU s':>7} "
          f"{'total s':>8}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("goal", "curve", "ablate"))
    parser.add_argument("--data", choices=("stardist", "synthetic"), default="stardist")
    parser.add_argument("--counts", default="1,2,4,8,12")
    parser.add_argument("--configs", default="default,none,affine,joint",
                        help="ablate: comma-separated names of --extra option sets (see ABLATIONS)")
    parser.add_argument("--extra", default="", help="extra CLI options for every run, e.g. '--steps 100'")
    parser.add_argument("--timeline", action="store_true", help="also score the held-out images at each validation")
    parser.add_argument("--data-cache", default=os.path.join(tempfile.gettempdir(), "napari-autosam-bench-data"))
    args = parser.parse_args()

    import torch

    from napari_autosam.progress import run
    from napari_autosam.sam.registry import load_sam

    torch.manual_seed(0)
    sam = run(load_sam("tiny", device="cpu"))
    extra = args.extra.split()
    print(f"tiny SAM on the CPU, torch threads {torch.get_num_threads()}, {os.cpu_count()} cores; {_load()}")
    cache = Path(args.data_cache)
    _header()
    if args.mode == "goal":
        data = stardist_sets(cache, None) if args.data == "stardist" else synthetic_sets(3)
        r = train_once(sam, data, extra, timeline=args.timeline)
        _print_run("goal (3 quadrants)", r)
        _print_timeline(r)
    elif args.mode == "curve":
        for n in [int(c) for c in args.counts.split(",")]:
            data = stardist_sets(cache, n) if args.data == "stardist" else synthetic_sets(n)
            r = train_once(sam, data, extra, timeline=args.timeline)
            _print_run(f"{args.data} n={n}", r)
            _print_timeline(r)
    else:
        data = stardist_sets(cache, None) if args.data == "stardist" else synthetic_sets(3)
        for name in args.configs.split(","):
            r = train_once(sam, data, extra + ABLATIONS[name].split())
            _print_run(name, r)


#: Option sets compared by ``ablate`` (on top of the CLI defaults).
ABLATIONS = {
    "default": "",
    "none": "--no-augment",
    "affine": "--affine",
    "glas": "--preset glas",
    "monuseg": "--preset monuseg",
    "polyps": "--preset polyps",
    "joint": "--joint",
    "gain1": "--logit-gain 1",
    "joint-gain1": "--joint --logit-gain 1",
    "resnet18": "--generator resnet18",
}


def _print_timeline(r: dict) -> None:
    if r["timeline"]:
        cells = ", ".join(f"{t:.0f}s {a:.3f}/{h:.3f}" for t, a, h in r["timeline"])
        print(f"    held-out AutoSAM/h by training time: {cells}", flush=True)


if __name__ == "__main__":
    main()
