"""Tracing label outlines for GeoJSON: the pixel-edge tracer against unioning pixel boxes, in one run.

The masks that made exports slow are ragged regions riddled with holes (an
untrained model's output, a tissue mask at full resolution).  For each size:

* ``ragged``: smoothed noise above its 40th percentile, one mask value: a few
  large regions with thousands of holes;
* ``nuclei``: smoothed noise below its 30th percentile, one label per
  connected blob: many small objects, the usual case.

``label_outlines`` (io/outlines.py) is timed against the way outlines used
to be made, the union of each band's row boxes (written out below), up to
``--baseline-up-to`` pixels a side; both must give the same geometry (zero
symmetric-difference area).  Last, ``napari-autosam export-geojson`` runs as
a whole process on the largest ragged mask saved as a TIFF (import, reading,
tracing, writing), timed with its peak RSS.

    python benchmarks/bench_outlines.py                  # ~2 min on a 2-core machine
    python benchmarks/bench_outlines.py --sides 1024,2048,4096,8192 --baseline-up-to 2048
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import shapely
import tifffile
from scipy import ndimage as ndi

from napari_autosam.io.outlines import _runs, label_outlines


def box_union_outlines(labels: np.ndarray, band: int = 1024) -> dict:
    """The former method: per band, the union of each label's row boxes; then the union of the bands."""
    pieces: dict[int, list] = {}
    for y0 in range(0, labels.shape[0], band):
        rows, starts, stops, values = _runs(labels[y0 : y0 + band])
        boxes = shapely.box(starts, rows + y0, stops, rows + y0 + 1)
        for value in np.unique(values).tolist():
            pieces.setdefault(value, []).append(shapely.union_all(boxes[values == value]))
    return {value: shapely.union_all(parts) for value, parts in pieces.items()}


def masks(side: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(side)
    smooth = ndi.gaussian_filter(rng.random((side, side)).astype(np.float32), 3)
    ragged = (smooth > np.quantile(smooth, 0.4)).astype(np.int32)
    nuclei = ndi.label(smooth < np.quantile(smooth, 0.3))[0].astype(np.int32)
    return {"ragged": ragged, "nuclei": nuclei}


def timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def export_process(mask: np.ndarray) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB) and feature count of ``napari-autosam export-geojson`` as a whole process."""
    import json

    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp) / "mask.tif", Path(tmp) / "mask.geojson"
        tifffile.imwrite(path, mask.astype(np.uint8), tile=(512, 512), compression="zlib")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "napari_autosam", "export-geojson", str(path), "--out", str(out),
                        "--kind", "instances"], check=True, capture_output=True)
        wall = time.perf_counter() - start
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return wall, rss, len(json.loads(out.read_text())["features"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", default="1024,2048,4096", help="mask sizes (px a side), comma-separated")
    parser.add_argument("--baseline-up-to", type=int, default=2048, help="time the box union up to this side")
    args = parser.parse_args()
    sides = [int(s) for s in args.sides.split(",")]
    print(f"{'mask':>14} {'objects':>8} {'holes':>7} {'tracer s':>9} {'box union s':>12} {'ratio':>7}")
    for side in sides:
        for name, labels in masks(side).items():
            traced, seconds = timed(label_outlines, labels)
            holes = sum(len(p.interiors) for g in traced.values() for p in shapely.get_parts(g))
            line = f"{name + ' ' + str(side):>14} {len(traced):>8} {holes:>7} {seconds:>9.2f}"
            if side <= args.baseline_up_to:
                union, base = timed(box_union_outlines, labels)
                worst = max(shapely.symmetric_difference(union[k], traced[k]).area for k in traced)
                assert sorted(union) == sorted(traced) and worst == 0, "the two methods disagree"
                line += f" {base:>12.2f} {base / seconds:>6.1f}×"
            print(line, flush=True)
    wall, rss, features = export_process(masks(sides[-1])["ragged"])
    print(f"export-geojson of the {sides[-1]}² ragged mask as a whole process: {wall:.1f} s, "
          f"peak RSS {rss:.0f} MB, {features} features")


if __name__ == "__main__":
    main()
