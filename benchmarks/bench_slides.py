"""Open-to-first-picture time and memory for a 16,384² and a 100,000² slide, and the two tile readers.

Usage::

    python benchmarks/bench_slides.py [--sizes 16384 100000] [--dir DIR] [--no-napari] [--keep]

Writes Aperio-style JPEG-tiled ``.svs`` slides (pre-compressed tiles
repeated, so writing takes seconds; about 1 GB for 100,000²) and measures,
each in a fresh subprocess so its peak RSS is its own:

* reader: ``napari_get_reader`` → layer data → the smallest level read
  whole plus a 1024×768 window of level 0, as napari's first picture needs;
* napari: a viewer (under Xvfb when there is no display) opening the slide
  with this plugin until the first screenshot of the canvas returns;
  RSS is reported as the peak and as the increase over the empty viewer;
* tile readers: mean time of a 1024² level-0 window read by tifffile's
  zarr store and by OpenSlide's ``read_region`` (20 random places).

Prints the figures and the 100,000² / 16,384² ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READER = r"""
import json, resource, sys, time
start = time.perf_counter()
import numpy as np
from napari_autosam._reader import napari_get_reader
[(levels, kwargs, _)] = napari_get_reader(sys.argv[1])(sys.argv[1])
smallest = np.asarray(levels[-1][...])
window = np.asarray(levels[0][:768, :1024])
elapsed = time.perf_counter() - start
print(json.dumps({"s": elapsed, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "levels": len(levels), "shape": list(levels[0].shape)}))
"""

NAPARI = r"""
import json, resource, sys, time
import napari
viewer = napari.Viewer(show=False)
viewer.window.resize(1024, 768)
viewer.screenshot(canvas_only=True)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
start = time.perf_counter()
viewer.open(sys.argv[1], plugin="napari-autosam")
picture = viewer.screenshot(canvas_only=True)
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"s": elapsed, "rss_mb": peak, "increase_mb": peak - base, "picture": list(picture.shape),
                  "nonblank": bool(picture[..., :3].std() > 0)}))
viewer.close()
"""

TILES = r"""
import json, sys, time
import numpy as np, openslide, tifffile, zarr
path = sys.argv[1]
level0 = zarr.open(tifffile.imread(path, aszarr=True, level=0), mode="r")
handle = openslide.OpenSlide(path)
places = np.random.default_rng(0).integers(0, min(level0.shape[:2]) - 1024, size=(20, 2))
out = {}
for name, read in (("tifffile", lambda y, x: level0[y:y + 1024, x:x + 1024]),
                   ("openslide", lambda y, x: np.asarray(handle.read_region((int(x), int(y)), 0, (1024, 1024))))):
    read(0, 0)
    start = time.perf_counter()
    for y, x in places:
        read(int(y), int(x))
    out[name] = (time.perf_counter() - start) / len(places)
print(json.dumps(out))
"""


def measure(script: str, path: Path, *, display: bool = False) -> dict:
    command = [sys.executable, "-c", script, str(path)]
    if display and not os.environ.get("DISPLAY") and shutil.which("xvfb-run"):
        command = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", *command]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"measurement failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(lines[-1])


def load() -> str:
    try:
        return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[16384, 100000])
    parser.add_argument("--dir", default=None, help="where to write the slides (default: a temporary folder)")
    parser.add_argument("--no-napari", action="store_true", help="skip the napari viewer measurement")
    parser.add_argument("--keep", action="store_true", help="keep the slides afterwards")
    args = parser.parse_args()
    from napari_autosam.data.synthetic_slides import write_big_svs

    folder = Path(args.dir or tempfile.mkdtemp(prefix="bench-slides-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"{load()} at start")
    rows = {}
    try:
        for size in args.sizes:
            path = folder / f"slide_{size}.svs"
            start = time.perf_counter()
            write_big_svs(path, size)
            print(f"wrote {path.name}: {path.stat().st_size / 2**20:.0f} MiB in {time.perf_counter() - start:.1f} s")
            rows[size] = {"reader": measure(READER, path), "tiles": measure(TILES, path)}
            if not args.no_napari:
                rows[size]["napari"] = measure(NAPARI, path, display=True)
        small, big = args.sizes
        print(f"\n{'':<44}{small:>12,}²{big:>12,}²{'ratio':>8}")
        for key, label in (("reader", "reader: first picture"), ("napari", "napari: open → first screenshot")):
            if key not in rows[small]:
                continue
            a, b = rows[small][key], rows[big][key]
            print(f"{label + ' s':<44}{a['s']:>13.2f}{b['s']:>13.2f}{b['s'] / a['s']:>8.2f}")
            print(f"{label + ' peak RSS MB':<44}{a['rss_mb']:>13.0f}{b['rss_mb']:>13.0f}{b['rss_mb'] / a['rss_mb']:>8.2f}")
            if "nonblank" in a and not (a["nonblank"] and b["nonblank"]):
                print("warning: a first screenshot was blank")
            if "increase_mb" in a:
                print(f"{'napari: RSS over empty viewer MB':<44}{a['increase_mb']:>13.0f}{b['increase_mb']:>13.0f}")
        for reader in ("tifffile", "openslide"):
            a, b = rows[small]["tiles"][reader], rows[big]["tiles"][reader]
            print(f"{'1024² level-0 read ms, ' + reader:<44}{a * 1000:>13.1f}{b * 1000:>13.1f}{b / a:>8.2f}")
        ratio = rows[big]["tiles"]["openslide"] / rows[big]["tiles"]["tifffile"]
        print(f"OpenSlide / tifffile window read time: {ratio:.2f}")
        print(f"{load()} at end")
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
