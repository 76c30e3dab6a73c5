"""Real H&E nuclei: AutoSAM and h(g(I)) against a random forest pixel classifier and a haematoxylin threshold.

Usage::

    python benchmarks/bench_he_learning.py goal                    # 10 training tiles, all four methods
    python benchmarks/bench_he_learning.py curve --counts 1,2,5,10,20 [--configs default,rgb]
    python benchmarks/bench_he_learning.py ablate --configs default,rgb,gain1 [--no-baselines]
    python benchmarks/bench_he_learning.py goal --data PATH        # a checkout or mirror of the data
    python benchmarks/bench_he_learning.py curve --configs ""      # the baselines only

Data: MoNuSeg 2018 test images cut into 512² tiles (see ``he_data.py``:
20 training tiles from five images, 28 test tiles from seven other images).
Every method sees the same first ``n`` training tiles and is scored on the
same 28 test tiles with the project's one Dice
(:func:`napari_autosam.losses.dice_iou`, per tile, then the mean):

* **Otsu (H)**: Otsu's threshold of the haematoxylin channel
  (``skimage.color.rgb2hed``) of each test tile, computed on that tile; no training.
* **random forest**: the pixel classifier QuPath and ilastik offer —
  ``skimage.feature.multiscale_basic_features`` of RGB and HED (σ 1-16),
  20,000 pixels sampled per training tile, 100 trees of depth 12
  (scikit-learn, the ``bench`` extra).
* **AutoSAM and h(g(I))**: ``napari-autosam train`` with the command line's
  defaults (its options are parsed by the CLI's own parser; ``--extra`` and
  the ``ablate`` configurations add options), the tiny SAM, the CPU.  The
  best state is chosen on the CLI's own validation split of the training
  tiles, never on the test tiles.

Every row prints the machine's load (the machine may be shared), the steps
of each stage and steps per second, so runs under different load can be
compared at equal steps as well as at equal time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_learning import _load, train_once  # noqa: E402
from he_data import DEFAULT_ROOT, load_split  # noqa: E402

RF_PIXELS_PER_TILE = 20_000
RF_TREES, RF_DEPTH = 100, 12


# --- baselines -------------------------------------------------------------------------------


def _dice(pred, mask) -> float:
    from napari_autosam.losses import dice_iou

    return dice_iou(pred, mask)[0]


def otsu_h(tiles) -> float:
    """Mean Dice of Otsu's threshold of the haematoxylin channel, per tile."""
    from skimage.color import rgb2hed
    from skimage.filters import threshold_otsu

    scores = []
    for t in tiles:
        h = rgb2hed(t.image)[..., 0]
        scores.append(_dice(h > threshold_otsu(h), t.mask))
    return float(np.mean(scores))


def rf_features(image: np.ndarray) -> np.ndarray:
    """``H×W×F`` float32 multiscale features of RGB and HED (σ 1-16)."""
    from skimage.color import rgb2hed
    from skimage.feature import multiscale_basic_features

    hed = rgb2hed(image)
    hed = (hed - hed.min(axis=(0, 1))) / np.maximum(np.ptp(hed, axis=(0, 1)), 1e-6)
    stack = np.concatenate([image / 255.0, hed], axis=-1).astype(np.float32)
    return multiscale_basic_features(stack, channel_axis=-1, sigma_min=1, sigma_max=16).astype(np.float32)


def random_forest(train_tiles, test_tiles, seed: int = 0) -> dict:
    """Train the pixel classifier on ``train_tiles``; mean test Dice and seconds (training, prediction)."""
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    xs, ys = [], []
    for t in train_tiles:
        f = rf_features(t.image)
        f = f.reshape(-1, f.shape[-1])
        idx = rng.choice(len(f), size=min(RF_PIXELS_PER_TILE, len(f)), replace=False)
        xs.append(f[idx])
        ys.append(t.mask.reshape(-1)[idx])
    forest = RandomForestClassifier(n_estimators=RF_TREES, max_depth=RF_DEPTH, n_jobs=2, random_state=seed)
    forest.fit(np.concatenate(xs), np.concatenate(ys))
    trained = time.perf_counter() - t0
    scores = []
    for t in test_tiles:
        f = rf_features(t.image)
        pred = forest.predict(f.reshape(-1, f.shape[-1])).reshape(t.mask.shape)
        scores.append(_dice(pred, t.mask))
    return {"dice": float(np.mean(scores)), "seconds_training": trained,
            "seconds_predict": time.perf_counter() - t0 - trained}


# --- AutoSAM ---------------------------------------------------------------------------------


def autosam(sam, train_tiles, test_tiles, extra: list[str], *, timeline: bool = False) -> dict:
    data = ([t.image for t in train_tiles], [t.mask for t in train_tiles],
            [t.image for t in test_tiles], [t.mask for t in test_tiles])
    return train_once(sam, data, extra, timeline=timeline)


def _steps(r: dict) -> str:
    g, h = r["steps"].get("g", 0), r["steps"].get("h", 0)
    secs = r["seconds_training"]
    return f"g {g} + h {h} steps, {(g + h) / secs:.2f} steps/s" if secs == secs and secs > 0 else f"g {g} + h {h}"


def _print_autosam(label: str, r: dict) -> None:
    print(f"{label:<26} n={r['n']:<3} h(g(I)) {r['h']:.3f}  AutoSAM {r['autosam']:.3f}  "
          f"train {r['seconds_training']:.0f} s (CPU {r['cpu_training']:.0f} s)  {_steps(r)}  "
          f"ended {r['ended']}  [{_load()}]", flush=True)
    if r["timeline"]:
        cells = ", ".join(f"{t:.0f}s {a:.3f}/{h:.3f}" for t, a, h in r["timeline"])
        print(f"    test AutoSAM/h by training time: {cells}", flush=True)


def _print_rf(n: int, r: dict) -> None:
    print(f"{'random forest':<26} n={n:<3} Dice {r['dice']:.3f}  train {r['seconds_training']:.0f} s  "
          f"predict {r['seconds_predict']:.0f} s  [{_load()}]", flush=True)


#: Option sets compared by ``ablate`` (on top of the CLI defaults).
ABLATIONS = {
    "default": "",
    "rgb": "--g-input rgb",
    "hed": "--g-input hed",
    "rgb_norm": "--g-input rgb_norm",
    "none": "--no-augment",
    "gain1": "--logit-gain 1",
    "input512": "--input-size 512",
    "floor": "--min-steps 100",
    "nolimit": "--time-limit 0",
    "t240": "--time-limit 240",
    "steps100": "--time-limit 0 --steps 100 --h-steps 100",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("goal", "curve", "ablate"))
    parser.add_argument("--data", default=DEFAULT_ROOT, help="checkout or bare mirror of the data repository")
    parser.add_argument("--n", type=int, default=10, help="training tiles for goal / ablate")
    parser.add_argument("--counts", default="1,2,5,10,20")
    parser.add_argument("--configs", default="default")
    parser.add_argument("--extra", default="", help="more CLI options for every AutoSAM run")
    parser.add_argument("--no-baselines", action="store_true", help="skip the random forest")
    parser.add_argument("--timeline", action="store_true", help="score the test tiles at each validation")
    args = parser.parse_args()

    import torch

    from napari_autosam.progress import run
    from napari_autosam.sam.registry import load_sam

    split = load_split(args.data)
    torch.manual_seed(0)
    sam = run(load_sam("tiny", device="cpu"))
    extra = args.extra.split()
    print(f"MoNuSeg 2018 test images as 512² tiles: {len(split.train)} training, {len(split.test)} test; "
          f"tiny SAM on the CPU, torch threads {torch.get_num_threads()}, {os.cpu_count()} cores; {_load()}",
          flush=True)
    print(f"{'Otsu of haematoxylin':<26} Dice {otsu_h(split.test):.3f} (no training)", flush=True)
    if args.mode == "curve":
        counts = [int(c) for c in args.counts.split(",")]
    else:
        counts = [args.n]
    for n in counts:
        train_tiles = split.train[:n]
        if not args.no_baselines:
            _print_rf(n, random_forest(train_tiles, split.test))
        configs = [c for c in args.configs.split(",") if c] if args.mode != "goal" else ["default"]
        for name in configs:
            r = autosam(sam, train_tiles, split.test, extra + ABLATIONS[name].split(), timeline=args.timeline)
            _print_autosam(f"AutoSAM [{name}]", r)


if __name__ == "__main__":
    main()
