"""Images per hour: one process versus a dask LocalCluster of 1 and 2 workers (tiny SAM, CPU by default).

Usage::

    python benchmarks/bench_scale_out.py [--images 6] [--size 256] [--slide 1536] [--tile 512] [--sam tiny] [--device cpu]

Each configuration first segments one image per worker (starting the
workers and loading SAM and the model there), then the timed batch of
``--images`` images of ``--size``² pixels; the figures are steady-state
throughput.  Printed as images/hour and as ratios to the one-process run,
all measured in this one run, with the machine's load average.

Then one synthetic slide of ``--slide``² pixels (``--slide 0``: skipped)
goes to OME-Zarr labels in tiles of ``--tile`` px: in one process, and with
its tiles spread over 1 and 2 workers; printed as slides/hour and tiles/s,
with the tiles each worker did and whether the files equal the one-process
run's.  With a GPU
and ``--device cuda`` each worker process uses it (several processes on one
GPU share it; one worker per GPU is the usual choice).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import tifffile

from napari_autosam.cli import main
from napari_autosam.data.synthetic import make_nuclei_image
from napari_autosam.distributed.cluster import connect
from napari_autosam.distributed.dask_segment import segment_many
from napari_autosam.progress import run


def one_process(paths, out: Path, sam: str, device: str) -> float:
    main(["segment", str(paths[0]), "--out", str(out / "warm"), "--sam", sam, "--device", device])
    start = time.perf_counter()
    main(["segment", *map(str, paths), "--out", str(out / "one"), "--sam", sam, "--device", device])
    return time.perf_counter() - start


def on_cluster(paths, out: Path, workers: int, sam: str, device: str) -> float:
    with connect(workers=workers) as client:
        run(segment_many(paths[:workers], out / f"warm{workers}", client=client, sam=sam, device=device))
        start = time.perf_counter()
        result = run(segment_many(paths, out / f"dask{workers}", client=client, sam=sam, device=device))
        elapsed = time.perf_counter() - start
    assert not result.failed, result.failed
    return elapsed


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def slide_runs(path: Path, warm: list[Path], out: Path, tile: int, sam: str, device: str) -> dict:
    """name -> (seconds, tiles per worker or None, files equal to the one-process run's)."""
    argv = ["segment", str(path), "--sam", sam, "--device", device, "--format", "ome-zarr", "--tile", str(tile)]
    start = time.perf_counter()
    main([*argv, "--out", str(out / "slide-one")])
    runs = {"1 process": (time.perf_counter() - start, None, True)}
    reference = _tree(out / "slide-one")
    for workers in (1, 2):
        with connect(workers=workers) as client:
            run(segment_many(warm[:workers], out / f"slide-warm{workers}", client=client, sam=sam, device=device))
            start = time.perf_counter()
            result = run(segment_many([path], out / f"slide-dask{workers}", client=client, sam=sam, device=device,
                                      format="ome-zarr", tile=tile))
            elapsed = time.perf_counter() - start
        assert not result.failed, result.failed
        spread = sorted(result.tiles.get(str(path), {}).values(), reverse=True)
        runs[f"{workers} dask worker{'s' * (workers > 1)}"] = (elapsed, spread,
                                                               _tree(out / f"slide-dask{workers}") == reference)
    return runs


def main_(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--slide", type=int, default=1536, help="side of the one synthetic slide (0: none)")
    parser.add_argument("--tile", type=int, default=512, help="the slide's tile size")
    parser.add_argument("--sam", default="tiny")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = []
        for i in range(args.images):
            paths.append(tmp / f"img{i}.tif")
            tifffile.imwrite(paths[-1], make_nuclei_image((args.size, args.size), seed=i)[0])
        load = os.getloadavg()[0]
        times = {"1 process": one_process(paths, tmp, args.sam, args.device)}
        for workers in (1, 2):
            times[f"{workers} dask worker{'s' * (workers > 1)}"] = on_cluster(paths, tmp, workers, args.sam, args.device)
        load = max(load, os.getloadavg()[0])
        slides = {}
        if args.slide:
            slide = tmp / "slide.tif"
            tifffile.imwrite(slide, make_nuclei_image((args.slide, args.slide), seed=99)[0])
            slides = slide_runs(slide, paths, tmp, args.tile, args.sam, args.device)
            slide_load = max(load, os.getloadavg()[0])
    print(f"{args.images} images of {args.size}², SAM {args.sam}, {args.device}, {os.cpu_count()} CPUs, "
          f"load average up to {load:.1f}")
    base = times["1 process"]
    for name, seconds in times.items():
        print(f"{name:>15}: {args.images / seconds * 3600:8.0f} images/hour  ({base / seconds:.2f}× one process)")
    if slides:
        from napari_autosam.inference.tiling import passes_per_plane

        n = passes_per_plane((args.slide, args.slide), args.tile)
        print(f"one slide of {args.slide}², {n} tiles of {args.tile} px to OME-Zarr, load average up to {slide_load:.1f}")
        base = slides["1 process"][0]
        for name, (seconds, spread, same) in slides.items():
            where = "" if spread is None else f"  tiles per worker {spread}, files {'equal' if same else 'DIFFER'}"
            print(f"{name:>15}: {3600 / seconds:8.1f} slides/hour  {n / seconds:6.2f} tiles/s  "
                  f"({base / seconds:.2f}× one process){where}")


if __name__ == "__main__":
    main_()
