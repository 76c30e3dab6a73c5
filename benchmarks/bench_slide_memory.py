"""Does memory stay flat when the slide gets bigger?  GUI and CLI, 8,192² vs 32,768² slides.

Each run is its own subprocess and reports its peak resident memory (VmHWM)
and its RSS just before segmenting:

* ``gui``: the real AutoSAM widget in a napari viewer (under ``xvfb-run``
  when there is no display) segments the whole working image of a slide
  (tiny SAM); big results go to OME-Zarr labels on disk and are shown as
  lazy multiscale layers;
* ``cli``: ``napari-autosam segment`` on a tiled TIFF of the same working image;
* ``region``: the widget segments only the visible ~900×680 region of a
  20,000² slide (the case that used to build two 20,000² arrays).

The slides are procedural lazy arrays (nuclei images from a bank of blocks,
no two tiles alike), so the reader costs nothing and every byte measured is
the segmentation's.  The working image is the slide at pyramid level
``--level`` (downsample 2**level, default 2: 2,048² and 8,192²), chosen in
the widget's Resolution control (the command line: ``--level``).  Ratios are
large / small, measured in one run; the load (``uptime``) is printed.

    python benchmarks/bench_slide_memory.py                  # ~10 min on a busy 2-core machine
    python benchmarks/bench_slide_memory.py --sizes 4096 16384 --level 2 --only gui
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

import numpy as np

BLOCK = 512


class PatternSlide:
    """A lazy ``H×W×3`` uint8 image built from a bank of synthetic H&E blocks picked by position."""

    def __init__(self, shape: tuple[int, int], bank: int = 12, seed: int = 0) -> None:
        from napari_autosam.data.synthetic import make_nuclei_image

        self.shape = (int(shape[0]), int(shape[1]), 3)
        self.dtype, self.ndim = np.dtype(np.uint8), 3
        self.bank = np.stack([make_nuclei_image((BLOCK, BLOCK), seed=seed + i, stain="he")[0] for i in range(bank)])

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        ys, xs = (np.arange(n)[k] for k, n in zip(key[:2], self.shape[:2]))
        ys, xs = np.atleast_1d(ys), np.atleast_1d(xs)
        which = (ys[:, None] // BLOCK * 7919 + xs[None, :] // BLOCK * 104729) % len(self.bank)
        out = self.bank[which, (ys % BLOCK)[:, None], (xs % BLOCK)[None, :]]
        return out[:, :, key[2]]

    def __array__(self, dtype=None, copy=None):
        return self[:, :]


def pyramid(size: int) -> list[PatternSlide]:
    """A lazy multiscale slide (as a slide reader gives it): ``size²`` halved down to ≤ 1024²; one block bank."""
    levels = [PatternSlide((size, size))]
    while levels[-1].shape[0] > 1024:
        level = PatternSlide.__new__(PatternSlide)
        level.__dict__.update(levels[-1].__dict__)
        level.shape = (-(-level.shape[0] // 2), -(-level.shape[1] // 2), 3)
        levels.append(level)
    return levels


def _memory() -> tuple[float, float]:
    """``(current RSS, peak RSS)`` of this process in MiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _reset_peak() -> None:
    try:  # Linux ≥ 4.0: writing 5 resets VmHWM to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


# --- children -------------------------------------------------------------------------------------


def _wait(app, widget, timeout: float = 3600) -> None:
    start = time.time()
    while any(r.running for r in widget.runners):
        app.processEvents()
        time.sleep(0.02)
        if time.time() - start > timeout:
            raise TimeoutError("segmentation did not finish")
    app.processEvents()


def child_gui(size: int, level: int, region: bool) -> dict:
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-autosam", "AutoSAM")
    widget.model_section.select_sam("tiny")
    widget.model_section.load()
    _wait(app, widget)
    levels = pyramid(size)
    metadata = {"source": f"pattern{size}", "vendor": "benchmark", "backend": "numpy", "mpp": [0.25, 0.25],
                "objective_power": 40.0, "downsamples": [2.0**k for k in range(len(levels))]}
    viewer.add_image(levels, multiscale=True, rgb=True, name="slide", scale=(0.25, 0.25), units=("µm", "µm"),
                     contrast_limits=(0, 255), metadata=metadata)
    seg = widget.segment_section
    if region:
        camera = viewer.camera
        camera.center = (size * 0.125, size * 0.125)  # the middle, in µm
        camera.zoom = 4.0  # one screen pixel per level-0 pixel
        app.processEvents()
    seg.select("slide", "region" if region else "image")
    seg.set_resolution({"level": level})  # the Resolution control
    for _ in range(5):
        app.processEvents()
        time.sleep(0.05)
    before, _ = _memory()
    _reset_peak()
    start = time.time()
    seg.segment()
    _wait(app, widget)
    seconds = time.time() - start
    after, peak = _memory()
    layer = viewer.layers["AutoSAM"]
    out = {"rss_before": before, "rss_after": after, "peak": peak, "seconds": seconds, "multiscale": layer.multiscale,
           "region": list(seg.last_region) if region else None, "labels_shape": list(layer.data[0].shape if
                                                                                       layer.multiscale else layer.data.shape)}
    viewer.close()
    return out


def child_cli(path: str, out: str) -> dict:
    from napari_autosam.cli import main

    before, _ = _memory()
    _reset_peak()
    start = time.time()
    code = main(["segment", path, "--out", out, "--sam", "tiny", "--device", "cpu"])
    seconds = time.time() - start
    after, peak = _memory()
    return {"rss_before": before, "rss_after": after, "peak": peak, "seconds": seconds, "exit": code,
            "outputs": sorted(p.name for p in Path(out).iterdir())}


# --- parent ---------------------------------------------------------------------------------------


def _write_tiff(path: Path, working: int) -> None:
    import tifffile

    slide = PatternSlide((working, working))
    tiles = (slide[y : y + 512, x : x + 512] for y in range(0, working, 512) for x in range(0, working, 512))
    tifffile.imwrite(path, tiles, shape=(working, working, 3), dtype=np.uint8, tile=(512, 512),
                     photometric="rgb", compression="zlib", bigtiff=working * working * 3 > 2**31)


def _spawn(args: list[str], env: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        sys.exit(f"child {args} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def _load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=(8192, 32768), metavar=("SMALL", "LARGE"))
    parser.add_argument("--level", type=int, default=2, help="working pyramid level (downsample 2**level)")
    parser.add_argument("--only", choices=("gui", "cli", "region"), action="append")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "cli":
            result = child_cli(*rest)
        else:
            result = child_gui(int(rest[0]), int(rest[1]), kind == "region")
        print("RESULT " + json.dumps(result), flush=True)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-slide-memory-"))
    env = {**os.environ, "NAPARI_AUTOSAM_DATA": str(work / "data"), "NAPARI_AUTOSAM_CACHE": str(work / "cache"),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    needs_display = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    gui_prefix = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24"] if needs_display and shutil.which("xvfb-run") else []
    kinds = args.only or ["gui", "cli", "region"]
    results: dict[str, dict] = {}
    print(f"load before: {_load()}")
    try:
        for kind in ("gui", "cli"):
            if kind not in kinds:
                continue
            for size in args.sizes:
                working = size // 2**args.level
                if kind == "gui":
                    cmd = ["--child", "gui", str(size), str(args.level)]
                    done = subprocess.run([*gui_prefix, sys.executable, __file__, *cmd], env=env, capture_output=True, check=False,
                                          text=True)
                    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
                    if done.returncode != 0 or not lines:
                        sys.exit(f"gui child failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
                    results[f"gui {size}"] = json.loads(lines[-1][7:])
                else:
                    tif = work / f"slide{size}.tif"
                    _write_tiff(tif, working)
                    results[f"cli {size}"] = _spawn(["--child", "cli", str(tif), str(work / f"out{size}")], env)
                    tif.unlink()
                r = results[f"{kind} {size}"]
                print(f"{kind:6s} {size:>6}² slide (working {working}²): peak RSS {r['peak']:7.0f} MiB, "
                      f"before {r['rss_before']:6.0f} MiB, {r['seconds']:6.1f} s; "
                      + (f"multiscale layer {r['multiscale']} {r['labels_shape']}" if kind == "gui"
                         else f"→ {', '.join(r['outputs'])}"), flush=True)
            small, large = results.get(f"{kind} {args.sizes[0]}"), results.get(f"{kind} {args.sizes[1]}")
            if small and large:
                print(f"{kind:6s} peak RSS ratio {args.sizes[1]}² / {args.sizes[0]}²: {large['peak'] / small['peak']:.2f} "
                      f"(increase during segmentation: {large['peak'] - large['rss_before']:.0f} vs "
                      f"{small['peak'] - small['rss_before']:.0f} MiB)", flush=True)
        if "region" in kinds:
            cmd = ["--child", "region", "20000", "0"]
            done = subprocess.run([*gui_prefix, sys.executable, __file__, *cmd], env=env, capture_output=True, text=True, check=False)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
            if done.returncode != 0 or not lines:
                sys.exit(f"region child failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
            r = json.loads(lines[-1][7:])
            y0, y1, x0, x1 = r["region"]
            print(f"region 20000² slide, visible {y1 - y0}×{x1 - x0}: RSS {r['rss_before']:.0f} → {r['rss_after']:.0f} "
                  f"MiB (peak {r['peak']:.0f}), {r['seconds']:.1f} s; multiscale layer {r['multiscale']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load after: {_load()}")


if __name__ == "__main__":
    main()
