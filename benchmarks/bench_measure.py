"""Measuring a whole slide's instance labels: time, peak memory, and the ratio to segmenting it.

1. Writes the instance labels of a synthetic 50,000² slide at 0.5 µm/px to
   OME-Zarr (the package's label format, 1024² chunks) chunk by chunk, never
   holding the plane: one nucleus-like ellipse (semi-axes 4-11 px, any
   angle) in most cells of a 100 px grid, ≥ 200,000 objects, many across
   the 2048² measuring windows.  Only level 0 is written (measuring reads
   nothing else; the lower pyramid levels stay empty).
2. Runs ``napari-autosam measure`` on it as a whole process under
   ``/usr/bin/time -v`` (2 workers): wall time and peak RSS; checks the
   object count and the total area against the generator's.
3. Times SAM ViT-B's image encoder (random weights in the official layout)
   on one 1024² tile and multiplies by the slide's tiles: an estimate of
   segmenting the slide that leaves out g, the decoder and h (the encoder
   is about 77 % of ``segment``, docs/segmentation.md), so the ratio
   measurement / segmentation is, if anything, too high.

    python benchmarks/bench_measure.py                       # ~5 min on a busy 2-core machine
    python benchmarks/bench_measure.py --side 8192 --quick   # a small check (tiny SAM)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CELL = 100  # px between nuclei centres (one per grid cell at most)
MPP = 0.5


def cell_parameters(cells: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Per grid cell: present?, centre offset, semi-axes and angle of its ellipse (the object stays in its cell)."""
    rng = np.random.default_rng(seed)
    shape = (cells, cells)
    a, b = rng.uniform(5, 11, shape), rng.uniform(4, 9, shape)
    return {"present": rng.random(shape) < 0.9, "cy": rng.uniform(12, CELL - 12, shape),
            "cx": rng.uniform(12, CELL - 12, shape), "a": a, "b": np.minimum(a, b),
            "angle": rng.uniform(0, np.pi, shape)}


def chunk_labels(params: dict[str, np.ndarray], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """The labels of ``[y0:y1, x0:x1]``: each nearby cell's ellipse tested on the 25×25 px around its centre."""
    cells = params["present"].shape[0]
    reach = 12  # > the largest semi-axis, < the margin of a centre to its cell's edge
    rows = np.arange(max(0, (y0 - reach) // CELL), min(cells, (y1 + reach) // CELL + 1))
    cols = np.arange(max(0, (x0 - reach) // CELL), min(cells, (x1 + reach) // CELL + 1))
    ry, rx = (a.ravel() for a in np.meshgrid(rows, cols, indexing="ij"))
    keep = params["present"][ry, rx]
    ry, rx = ry[keep], rx[keep]
    cy, cx = params["cy"][ry, rx] + ry * CELL, params["cx"][ry, rx] + rx * CELL
    steps = np.arange(-reach, reach + 1)
    py = np.floor(cy)[:, None, None] + steps[None, :, None]
    px = np.floor(cx)[:, None, None] + steps[None, None, :]
    cos, sin = (f(params["angle"][ry, rx])[:, None, None] for f in (np.cos, np.sin))
    u = (py - cy[:, None, None]) * cos + (px - cx[:, None, None]) * sin
    v = -(py - cy[:, None, None]) * sin + (px - cx[:, None, None]) * cos
    inside = (u / params["a"][ry, rx][:, None, None]) ** 2 + (v / params["b"][ry, rx][:, None, None]) ** 2 <= 1
    inside &= (py >= y0) & (py < y1) & (px >= x0) & (px < x1)
    which, i, j = np.nonzero(inside)
    block = np.zeros((y1 - y0, x1 - x0), np.int32)
    block[(py[which, i, 0] - y0).astype(int), (px[which, 0, j] - x0).astype(int)] = (ry * cells + rx + 1)[which]
    return block


def write_slide(path: Path, side: int) -> tuple[int, int]:
    """Write the labels chunk by chunk; returns (objects, labelled pixels)."""
    from napari_autosam.io.labels_zarr import CHUNK, LabelImage, Placement

    params = cell_parameters(math.ceil(side / CELL))
    image = LabelImage.create(path, (side, side), np.int32, Placement((MPP, MPP), (0.0, 0.0), "micrometer"),
                              name="instances", attributes={"resolution": {"level": 0, "downsample": 1.0, "mpp": MPP}})
    pixels, ids = 0, set()
    for y in range(0, side, CHUNK):
        for x in range(0, side, CHUNK):
            block = chunk_labels(params, y, min(y + CHUNK, side), x, min(x + CHUNK, side))
            image.levels[0][y : y + block.shape[0], x : x + block.shape[1]] = block
            pixels += int(np.count_nonzero(block))
            ids.update(np.unique(block[block > 0]).tolist())
    return len(ids), pixels


def measure_process(labels: Path, out: Path, workers: int) -> tuple[float, float, float, str]:
    """Wall seconds, peak RSS (MB) and CPU seconds of ``napari-autosam measure`` as its own process."""
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "napari_autosam", "measure", str(labels),
           "--out", str(out), "--workers", str(workers)]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    rss_kb = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    cpu = sum(float(re.search(rf"{kind} time \(seconds\): ([\d.]+)", done.stderr).group(1)) for kind in ("User", "System"))
    return wall, rss_kb / 1024, cpu, done.stdout.strip()


def encoder_seconds_per_tile(variant: str) -> float:
    """SAM's image encoder on one 1024² RGB tile (random weights), the faster of two calls."""
    import torch

    from napari_autosam.progress import run
    from napari_autosam.sam.embedding import embed_images
    from napari_autosam.sam.registry import SAM_BUILDERS, load_sam_checkpoint

    folder = Path(tempfile.mkdtemp(prefix="bench-measure-sam-"))
    torch.manual_seed(0)
    checkpoint = folder / f"sam_{variant}_random.pth"
    torch.save(SAM_BUILDERS[variant]().state_dict(), checkpoint)
    sam = load_sam_checkpoint(checkpoint)
    rgb = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        run(embed_images(sam, [rgb]))
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--side", type=int, default=50_000, help="slide side in px (default 50,000)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--folder", default=None, help="where the labels go (kept, and reused by the next run)")
    parser.add_argument("--skip-segment", action="store_true", help="leave out the segmentation estimate")
    parser.add_argument("--quick", action="store_true", help="tiny SAM for the segmentation estimate")
    args = parser.parse_args()
    import pandas as pd

    folder = Path(args.folder or tempfile.mkdtemp(prefix="bench-measure-"))
    folder.mkdir(parents=True, exist_ok=True)
    labels = folder / f"slide{args.side}_instances.ome.zarr"
    print(f"load before: {os.getloadavg()[0]:.1f}")
    facts = folder / f"slide{args.side}.json"
    if args.folder and facts.exists() and labels.exists():  # labels of an earlier run: measured again
        objects, pixels = json.loads(facts.read_text())
        print(f"reusing {labels}: {objects:,} objects, {pixels:,} labelled px")
    else:
        start = time.perf_counter()
        objects, pixels = write_slide(labels, args.side)
        facts.write_text(json.dumps([objects, pixels]))
        print(f"wrote {args.side}² labels, {objects:,} objects, {pixels:,} labelled px in "
              f"{time.perf_counter() - start:.0f} s")
    wall, rss, cpu, line = measure_process(labels, folder / "objects.csv", args.workers)
    load = os.getloadavg()[0]
    table = pd.read_csv(folder / "objects.csv", usecols=["object_id", "area_um2"])
    area_ok = math.isclose(table["area_um2"].sum(), pixels * MPP**2, rel_tol=1e-9)
    print(line)
    print(f"measure: {wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {rss:.0f} MB ({args.workers} workers, load {load:.1f}); "
          f"rows {len(table):,} (expected {objects:,}, unique {table['object_id'].is_unique}), total area matches: {area_ok}")
    if args.skip_segment:
        return
    variant = "tiny" if args.quick else "vit_b"
    per_tile = encoder_seconds_per_tile(variant)
    tiles = math.ceil(args.side / 1024) ** 2
    segment = per_tile * tiles
    print(f"segmentation estimate: SAM {variant} encoder {per_tile:.2f} s per 1024² tile × {tiles:,} tiles = "
          f"{segment / 3600:.2f} h (load {os.getloadavg()[0]:.1f})")
    print(f"measurement / segmentation = {wall / segment:.4f}; goals: wall ≤ 120 s → {wall <= 120}, "
          f"RSS ≤ 1536 MB → {rss <= 1536}")


if __name__ == "__main__":
    main()
