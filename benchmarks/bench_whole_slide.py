"""A whole slide on a CPU: today's path, tissue detection, and tissue + h everywhere + SAM on the unsure 20 %.

Usage::

    python benchmarks/bench_whole_slide.py                  # 50,000² at 0.25 µm/px, ViT-B (random weights)
    python benchmarks/bench_whole_slide.py --size 8192 --sam tiny --sample 2   # a quick check

The slide: an Aperio-style ``.svs`` of ``size²`` RGB pixels at 0.25 µm/px, about 40 % tissue in a few
irregular lobes on glass (``napari_autosam.data.tissue_slides``), segmented at 0.5 µm/px in 1024² tiles
with the ViT-B architecture (random weights: timing only).  Every path runs as its own process limited
to ``--threads`` (default 2) torch threads; its peak RSS is that process's ``ru_maxrss``.

Paths:

a. today's: every tile of the plane through SAM's encoder, g, the decoder and h (``Segmenter.segment``);
b. tissue on: the tissue mask first, then the same per-tile work on the windows fitted to the tissue only
   (``inference.tiling.fitted_tiles``);
c. tissue + h(g(I)) on every tissue tile + AutoSAM on the most unsure 20 % of them
   (``inference.two_speed``, labels written to OME-Zarr as the CLI writes them).

**Sampled, then extrapolated.**  Path (a) takes about an hour here, so each path's per-tile cost is
measured on a fixed sample of ``--sample`` tissue tiles (the same tiles for every path, spread over
the slide), and whole-slide times are ``tiles × per-tile cost`` plus what was measured whole (tissue
detection).  A glass tile costs (a) as much as a tissue tile (the encoder does not look).  Peak RSS is
measured on the sample run: memory does not grow with the number of tiles (labels go to disk tile by
tile), so it stands for the whole run.  The machine's load average is printed with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WORKING_MPP = 0.5
SAM_SHARE = 0.2


def load() -> str:
    return f"load average {os.getloadavg()[0]:.1f}"


def build_segmenter(name: str):
    import torch

    from napari_autosam.inference import Segmenter
    from napari_autosam.progress import run
    from napari_autosam.sam.registry import SAM_BUILDERS, freeze, load_sam

    if name == "tiny":
        sam = run(load_sam("tiny", device="cpu"))
    else:
        torch.manual_seed(0)
        sam = freeze(SAM_BUILDERS[name]())
        sam.variant = name
    return Segmenter(sam)


def open_plane(path: Path):
    from napari_autosam.io.slides import open_slide
    from napari_autosam.io.working import working_image

    slide = open_slide(path)
    image, resolution = working_image(slide, mpp=WORKING_MPP)
    return slide, image, resolution


def sample_tiles(tissue, shape, downsample: float, count: int) -> list[int]:
    """``count`` tiles of the regular grid, mostly tissue, spread evenly over the raster order (the same for every path).

    The encoder's cost does not depend on where a window lies, so the regular grid's tissue
    tiles stand for the fitted tiles of (b) and (c) as well.
    """
    from napari_autosam.inference.tiling import segmentation_tiles

    tiles = segmentation_tiles(shape, 1024, 128)
    kept = [t.index for t in tiles if tissue.box_fraction(tuple(v * downsample for v in t.core)) > 0.5]
    step = max(1, len(kept) // count)
    return kept[step // 2 :: step][:count]


def child(args) -> dict:
    """One path on the sample tiles, in this process; prints a JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from napari_autosam.inference.tiling import segmentation_tiles
    from napari_autosam.io.tissue import TissueMask, slide_tissue
    from napari_autosam.progress import run

    started = time.perf_counter()
    seg = build_segmenter(args.sam)
    slide, image, resolution = open_plane(Path(args.slide))
    shape = image.shape[:2]
    out: dict = {"path": args.child, "setup_s": time.perf_counter() - started}
    tissue = None
    if args.child in ("b", "c"):
        start = time.perf_counter()
        tissue = slide_tissue(slide)
        out["tissue_s"] = time.perf_counter() - start
        from napari_autosam.inference.two_speed import plan_tiles

        start = time.perf_counter()
        plan_tiles(shape, tissue, downsample=resolution.downsample)  # the tiles fitted to the whole slide's tissue
        out["tissue_s"] += time.perf_counter() - start
    tiles = segmentation_tiles(shape, 1024, 128)
    sample = [tiles[k] for k in json.loads(args.tiles)]
    if args.child in ("a", "b"):
        from napari_autosam.io.normalize import Normalization

        start = time.perf_counter()
        for t in sample:
            y0, y1, x0, x1 = t.window
            run(seg.segment(image[y0:y1, x0:x1], normalization=Normalization.identity()))
        out["per_tile_s"] = (time.perf_counter() - start) / len(sample)
    else:
        from napari_autosam.inference.slide_job import segment_slide
        from napari_autosam.inference.two_speed import SamPlan

        only = np.zeros((shape[0] // 64 + 1, shape[1] // 64 + 1), bool)  # the sample tiles' cores as the tissue
        for t in sample:
            y0, y1, x0, x1 = t.core
            only[y0 // 64 + 1 : y1 // 64, x0 // 64 + 1 : x1 // 64] = True
        sample_tissue = TissueMask(only, (64 * resolution.downsample,) * 2, "given")
        with tempfile.TemporaryDirectory() as tmp:
            done = run(segment_slide(seg, image, tmp, "bench", tissue=sample_tissue, downsample=resolution.downsample,
                                     plan=SamPlan("uncertain", share=SAM_SHARE, tiles=1)))
        result = done.result
        out["h_per_tile_s"] = result.h_seconds / max(1, result.count("h") + result.count("sam"))
        out["sam_per_tile_s"] = result.sam_seconds / max(1, result.count("sam"))
        out["tissue_fraction"] = tissue.fraction
        out["tissue_mm2"] = tissue.area_mm2(slide.mpp)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["load"] = os.getloadavg()[0]
    print(json.dumps(out), flush=True)
    return out


def spawn(path: str, args, slide: Path, sample: list[int]) -> dict:
    command = [sys.executable, __file__, "--child", path, "--slide", str(slide), "--tiles", json.dumps(sample),
               "--sam", args.sam, "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=50_000)
    parser.add_argument("--sam", default="vit_b")
    parser.add_argument("--sample", type=int, default=3, help="tissue tiles measured per path")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--slide", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--tiles", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    from napari_autosam.data.tissue_slides import write_tissue_svs
    from napari_autosam.inference.tiling import segmentation_tiles
    from napari_autosam.inference.two_speed import plan_tiles
    from napari_autosam.io.tissue import slide_tissue

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        slide_path, _ = write_tissue_svs(Path(tmp) / "slide.svs", args.size, fraction=0.4, mpp=0.25)
        print(f"slide {args.size}² at 0.25 µm/px written in {time.perf_counter() - start:.0f} s; {load()}", flush=True)
        slide, image, resolution = open_plane(slide_path)
        tissue = slide_tissue(slide)
        tiles, shares = plan_tiles(image.shape[:2], tissue, downsample=resolution.downsample)
        grid = segmentation_tiles(image.shape[:2], 1024)  # today's tiles, as the CLI cuts them
        n_all, n_tissue = len(grid), sum(s > 0 for s in shares)
        n_grid = sum(tissue.box_fraction(tuple(v * resolution.downsample for v in t.core)) > 0 for t in grid)
        n_sam = int(np.ceil(SAM_SHARE * n_tissue))
        mm2 = tissue.area_mm2(slide.mpp)
        print(f"plane {image.shape[0]}×{image.shape[1]} at {WORKING_MPP} µm/px: {n_all} tiles, {n_tissue} with tissue "
              f"({tissue.fraction:.1%} of the slide, {mm2:.1f} mm²): {n_tissue} windows fitted to the tissue instead of "
              f"the grid's {n_grid} tissue tiles; SAM on {n_sam} in (c)", flush=True)
        sample = sample_tiles(tissue, image.shape[:2], resolution.downsample, args.sample)
        slide.close()
        runs = {}
        for path in ("a", "b", "c"):
            runs[path] = spawn(path, args, slide_path, sample)
            print(f"  ({path}) sample run: {json.dumps(runs[path])}", flush=True)
    a, b, c = runs["a"], runs["b"], runs["c"]
    time_a = n_all * a["per_tile_s"]
    time_b = b["tissue_s"] + n_tissue * b["per_tile_s"]
    first_h = c["tissue_s"] + n_tissue * c["h_per_tile_s"]
    time_c = first_h + n_sam * c["sam_per_tile_s"]
    print(f"\n{args.sam}, {args.threads} threads, sample of {len(sample)} tissue tiles per path, extrapolated to the "
          f"whole slide; {load()}")
    print(f"(a) today's path      {time_a / 60:7.1f} min  peak RSS {a['peak_rss_mb']:6.0f} MB  "
          f"({a['per_tile_s']:.1f} s per tile × {n_all} tiles)")
    print(f"(b) tissue on         {time_b / 60:7.1f} min  peak RSS {b['peak_rss_mb']:6.0f} MB  "
          f"(tissue mask and fitted tiles {b['tissue_s']:.1f} s + {b['per_tile_s']:.1f} s × {n_tissue} tiles)")
    print(f"(c) tissue + h + SAM  {time_c / 60:7.1f} min  peak RSS {c['peak_rss_mb']:6.0f} MB  "
          f"(h {c['h_per_tile_s']:.2f} s × {n_tissue} + SAM {c['sam_per_tile_s']:.1f} s × {n_sam})")
    print(f"first complete h layer {first_h / 60:.1f} min; (c) {time_c / mm2:.1f} s per mm² of tissue")
    print(f"ratios: (a)/(b) {time_a / time_b:.2f}× (goal ≥ 2), (a)/(c) {time_a / time_c:.2f}×; "
          f"goals (c) ≤ 30 min: {'met' if time_c <= 1800 else 'not met'}, "
          f"≤ 2 GB: {'met' if c['peak_rss_mb'] <= 2048 else 'not met'}; {load()}")


if __name__ == "__main__":
    main()
