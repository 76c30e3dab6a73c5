"""Preview (h(g(I)) only) against full AutoSAM: time per 1024² tile and for a whole 8,192² image.

Usage::

    python benchmarks/bench_preview.py [--device cpu] [--generator hardnet_small] [--whole 8192]
                                       [--repeats 3] [--full-whole]

SAM ViT-B has random weights in the official layout (nothing is
downloaded); g and h are the untrained default (``hardnet_small`` at 256²)
unless ``--generator hardnet85`` (at 512²) is asked for.  Both paths go
through ``Segmenter.segment`` as the CLI and GUI do, so the figures include
reading, scaling, blending and thresholding.  The whole image is a 1024²
synthetic nuclei tile repeated to ``--whole`` pixels and cut into 1024²
tiles with 128 pixels of overlap; its AutoSAM time is the whole preview's
time plus the number of tiles × the per-tile difference, unless
``--full-whole`` runs it (hours on a CPU).  Every figure is printed with the machine's load; nothing is
asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from napari_autosam.device import pick_device
from napari_autosam.progress import run


def vit_b(device) -> torch.nn.Module:
    from napari_autosam.sam.registry import SAM_BUILDERS, freeze

    torch.manual_seed(0)
    sam = freeze(SAM_BUILDERS["vit_b"]())
    sam.variant = "vit_b"
    return sam.to(device)


def model(generator: str):
    from napari_autosam.inference import default_model
    from napari_autosam.models.checkpoint import ModelCheckpoint
    from napari_autosam.models.prompt_generator import build_prompt_generator
    from napari_autosam.models.surrogate import SurrogateDecoder

    if generator == "hardnet_small":
        return default_model()
    torch.manual_seed(0)
    g = build_prompt_generator(generator, input_size=512)
    return ModelCheckpoint(g.eval(), SurrogateDecoder().eval(), {})


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()) + f" on {os.cpu_count()} cores"


def main() -> None:
    from napari_autosam.data.synthetic import make_nuclei_image
    from napari_autosam.inference import Segmenter
    from napari_autosam.inference.tiling import tile_grid
    from napari_autosam.sam.cache import EmbeddingCache

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--generator", default="hardnet_small", choices=("hardnet_small", "hardnet85"))
    parser.add_argument("--whole", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-whole", action="store_true", help="really run AutoSAM on the whole image")
    args = parser.parse_args()

    device = pick_device(args.device)
    sam = vit_b(device)
    checkpoint = model(args.generator)
    tile, _ = make_nuclei_image((1024, 1024), seed=0)
    print(f"device {device}, torch threads {torch.get_num_threads()}, SAM vit_b (random weights), "
          f"g {args.generator} at {checkpoint.prompt_generator.input_size}²; {load()}")

    # A fresh in-memory cache each time, so every AutoSAM run pays for the encoder as a new tile would.
    def segmenter() -> Segmenter:
        return Segmenter(sam, checkpoint, cache=EmbeddingCache(sam))

    run(segmenter().segment(tile, preview=True))  # warm-up (allocations, kernels)
    preview = timed(lambda: run(segmenter().segment(tile, preview=True)), args.repeats)
    full = timed(lambda: run(segmenter().segment(tile)), max(1, args.repeats - 1))
    print(f"per 1024² tile: preview {preview:.3f} s, AutoSAM {full:.2f} s → preview is {full / preview:.0f}× faster "
          f"({load()})")

    reps = -(-args.whole // 1024)
    whole = np.tile(tile, (reps, reps))[: args.whole, : args.whole]
    n_tiles = len(tile_grid(whole.shape, 1024, 128))
    start = time.perf_counter()
    result = run(segmenter().segment(whole, tile=1024, overlap=128, preview=True))
    whole_preview = time.perf_counter() - start
    if result.store is not None:
        import shutil

        shutil.rmtree(result.store, ignore_errors=True)
    if args.full_whole:
        start = time.perf_counter()
        result = run(segmenter().segment(whole, tile=1024, overlap=128))
        whole_full, how = time.perf_counter() - start, "measured"
    else:
        # The same reading, blending and writing as the preview, plus SAM's extra time on every tile.
        whole_full, how = whole_preview + (full - preview) * n_tiles, f"preview + {n_tiles} × per-tile SAM time"
    print(f"whole {args.whole}² image ({n_tiles} tiles of 1024², overlap 128): preview {whole_preview:.1f} s, "
          f"AutoSAM {whole_full / 60:.1f} min ({how}) → {whole_full / whole_preview:.0f}× ({load()})")


if __name__ == "__main__":
    main()
