"""Hash every file ``napari-autosam segment`` writes for a fixed set of inputs, to show a change keeps outputs identical.

Usage::

    python benchmarks/check_identical_outputs.py [--dir DIR] [--models DIR] [--results DIR] [--out hashes.txt] [--skip-big]

Writes small test images with tifffile (numpy only, fixed seeds) into
``DIR/inputs`` and runs ``segment`` (the tiny SAM, on the CPU) on each of
them with one set of options per case: a 2D grey image (masks and
probability maps), an RGB image, a small Z stack, a tiled plane, instances
with GeoJSON, the preview, a plane over 4096² pixels that goes to OME-Zarr
(with GeoJSON), a class model and a depth model.  The class and depth
models are trained once into ``--models`` (a short run of ``train``) and
reused afterwards, so a later run compares segmentation only.

Prints one line per output file, ``sha256  case/relative/path``; an
OME-Zarr folder is listed file by file (chunks and metadata).  The input
paths are part of some outputs (OME-Zarr attributes), so compare runs made
with the same ``--dir``.  Compare two runs with ``diff``.  ``--cases`` runs
some cases only; ``--hash-only`` hashes what a run cut short left complete.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile


def blobs(shape, n, seed, radius=(6, 14)) -> np.ndarray:
    """A uint8 grey image with ``n`` bright discs on a noisy dark background."""
    rng = np.random.default_rng(seed)
    image = rng.normal(40, 8, size=shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for _ in range(n):
        cy, cx = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        r = rng.integers(*radius)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] += 150
    return np.clip(image, 0, 255).astype(np.uint8)


def write_inputs(root: Path, skip_big: bool) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    files = {}

    def put(name, array, **kw):
        path = root / name
        if not path.exists():
            tifffile.imwrite(path, array, **kw)
        files[name] = path

    put("grey.tif", blobs((256, 256), 12, 1))
    grey = blobs((192, 192), 8, 2)
    put("rgb.tif", np.stack([grey, 255 - grey, grey // 2], axis=-1), photometric="rgb")
    put("stack.tif", np.stack([blobs((128, 128), 6, 10 + z) for z in range(6)]))
    put("wide.tif", blobs((640, 700), 30, 3))
    if not skip_big:
        big = np.zeros((4160, 4200), np.uint8)
        big[:1024, :1024] = blobs((1024, 1024), 40, 4)
        big[3000:3640, 3100:3740] = blobs((640, 640), 20, 5)
        put("big.tif", big, tile=(256, 256), compression="zlib")
    return files


def train_models(models: Path, work: Path, env) -> dict[str, Path]:
    """A class model and a depth model (tiny SAM, one step), trained once into ``models``."""
    models.mkdir(parents=True, exist_ok=True)
    fast = ["--sam", "tiny", "--steps", "1", "--h-steps", "1", "--min-steps", "0", "--input-size", "64",
            "--batch-size", "2", "--variants", "identity", "--device", "cpu", "--time-limit", "0"]
    out = {"classes": models / "classes.safetensors", "depth": models / "depth.safetensors"}
    if not out["classes"].exists():
        data = work / "train-classes"
        (data / "images").mkdir(parents=True, exist_ok=True)
        (data / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(3):
            image = blobs((64, 64), 5, 100 + i, radius=(4, 8))
            mask = np.zeros_like(image)
            mask[image > 120] = 1
            mask[:, 32:][image[:, 32:] > 120] = 2
            tifffile.imwrite(data / "images" / f"s{i}.tif", image)
            tifffile.imwrite(data / "masks" / f"s{i}.tif", mask)
        (data / "classes.csv").write_text("id,name,color\n1,left,#ff0000\n2,right,#00ff00\n")
        cli(["train", "--images", data / "images", "--masks", data / "masks", "--out", out["classes"],
             "--classes", data / "classes.csv", *fast], env)
    if not out["depth"].exists():
        data = work / "train-depth"
        (data / "images").mkdir(parents=True, exist_ok=True)
        (data / "masks").mkdir(parents=True, exist_ok=True)
        stack = np.stack([blobs((32, 32), 2, 200 + z, radius=(4, 7)) for z in range(5)])
        tifffile.imwrite(data / "images" / "tubes.tif", stack)
        tifffile.imwrite(data / "masks" / "tubes.tif", (stack > 120).astype(np.uint8))
        cli(["train", "--images", data / "images", "--masks", data / "masks", "--out", out["depth"],
             "--sam", "tiny", "--depth-adapters", "--depth-window", "3", "--steps", "1",
             "--generator", "hardnet_small", "--input-size", "64"], env)
    return out


def cli(arguments, env) -> None:
    command = [sys.executable, "-m", "napari_autosam", *map(str, arguments)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stdout}\n{done.stderr}")


def cases(files: dict[str, Path], models: dict[str, Path]) -> dict[str, list]:
    tiny = ["--sam", "tiny", "--device", "cpu"]
    out = {
        "grey": [files["grey.tif"], "--save-prob", *tiny],
        "rgb": [files["rgb.tif"], "--format", "tiff", *tiny],
        "stack": [files["stack.tif"], "--stack", *tiny],
        "tiled": [files["wide.tif"], "--tile", "256", "--overlap", "32", "--mode", "instances", "--no-refine", *tiny],
        "instances": [files["grey.tif"], "--mode", "instances", "--geojson", *tiny],
        "preview": [files["grey.tif"], files["wide.tif"], "--preview", "--mode", "instances", "--geojson", *tiny],
        "classes": [files["grey.tif"], "--model", models["classes"], "--mode", "instances", "--no-refine",
                    "--geojson", *tiny],
        "depth": [files["stack.tif"], "--model", models["depth"], "--stack", *tiny],
    }
    if "big.tif" in files:
        out["big-ome-zarr"] = [files["big.tif"], "--geojson", *tiny]
        out["big-ome-zarr-preview-instances"] = [files["big.tif"], "--preview", "--mode", "instances", *tiny]
    return out


def hashes(root: Path) -> list[str]:
    lines = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(root).as_posix()}")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/autosam-identical"), help="working folder")
    parser.add_argument("--models", type=Path, default=None,
                        help="folder of the class and depth models (trained there once; default DIR/models)")
    parser.add_argument("--out", type=Path, default=None, help="also write the hash lines to this file")
    parser.add_argument("--results", type=Path, default=None,
                        help="where the outputs go (default DIR/outputs; emptied first), e.g. for a second run "
                        "beside a running one")
    parser.add_argument("--skip-big", action="store_true", help="leave out the 4160×4200 OME-Zarr cases")
    parser.add_argument("--cases", nargs="*", default=None, metavar="NAME", help="run only these cases")
    parser.add_argument("--hash-only", action="store_true",
                        help="run nothing: hash the cases already in the results folder (a run cut short)")
    args = parser.parse_args(argv)
    work = args.dir.resolve()
    env = dict(os.environ, NAPARI_AUTOSAM_DEVICE="cpu", NAPARI_AUTOSAM_CACHE=str(work / "cache"),
               NAPARI_AUTOSAM_CHECKPOINT_URL="http://127.0.0.1:9/unreachable")
    files = write_inputs(work / "inputs", args.skip_big)
    models = train_models((args.models or work / "models").resolve(), work, env)
    results = (args.results or work / "outputs").resolve()
    chosen = {k: v for k, v in cases(files, models).items() if args.cases is None or k in args.cases}
    lines = []
    for name, arguments in chosen.items():
        if not args.hash_only:
            shutil.rmtree(results / name, ignore_errors=True)
            cli(["segment", *arguments, "--out", results / name], env)
        elif not (results / name).is_dir():
            continue
        lines += [f"{line.split('  ', 1)[0]}  {name}/{line.split('  ', 1)[1]}" for line in hashes(results / name)]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
