"""What the tile overlap buys: seam error with and without overlap, and encoder passes per image.

Usage::

    python benchmarks/bench_tiles.py seams   [--sam tiny|vit_b] [--overlaps 0 32 64 128] [--band 32]
    python benchmarks/bench_tiles.py passes  [--sizes 2048 4096 16384] [--overlaps 0 64 128]

``seams``: a synthetic nuclei image of ``1024 × (2048 - overlap)`` pixels is
cut into exactly two 1024-px tiles that overlap by ``overlap`` and blended as
the segmenter does.  The reference for the pixels around the seam is a
1024-px window *centred* on the seam, where those pixels have full context
on both sides.  Printed: the mean absolute difference of the AutoSAM
probabilities and the fraction of mask pixels that differ, in a band of
``±band`` px around the seam, and the same in a band 256-320 px away from it
(the floor: what any shift of the window changes).  SAM: the tiny test SAM
or ViT-B with random weights; g: the untrained default.  Nothing downloaded.

``passes``: encoder passes per square plane for the old layout (1024-px tiles,
at least 128 px overlap) and the segmenter's layout (tiles may grow by 1/16).
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from napari_autosam.progress import run


def load(name: str):
    from napari_autosam.sam.registry import SAM_BUILDERS, freeze, load_sam

    if name == "tiny":
        return run(load_sam("tiny", device="cpu"))
    torch.manual_seed(0)
    sam = freeze(SAM_BUILDERS[name]())
    sam.variant = name
    return sam


def band_errors(a: np.ndarray, b: np.ndarray, columns: np.ndarray) -> tuple[float, float]:
    """Mean |Δp| and the fraction of differing ``p > 0.5`` pixels over the given columns."""
    pa, pb = a[:, columns], b[:, columns]
    return float(np.abs(pa - pb).mean()), float(((pa > 0.5) != (pb > 0.5)).mean())


def bench_seams(args) -> None:
    from napari_autosam.data.synthetic import make_nuclei_image
    from napari_autosam.inference import Segmenter
    from napari_autosam.inference.tiling import segmentation_tiles

    sam = load(args.sam)
    seg = Segmenter(sam)
    image, _ = make_nuclei_image((1024, 2048), seed=1)
    print(f"SAM {args.sam}, untrained default g; load average {os.getloadavg()[0]:.1f}")
    print(f"{'overlap':>8} {'tiles':>6} {'seam |Δp|':>10} {'seam flips':>11} {'far |Δp|':>9} {'far flips':>10}")
    for overlap in args.overlaps:
        width = 2048 - overlap
        crop = image[:, :width]
        tiles = segmentation_tiles(crop.shape, 1024, overlap)
        tiled = run(seg.segment(crop, tile=1024, overlap=overlap))
        centre = width // 2
        ref_window = crop[:, centre - 512 : centre + 512]
        ref = run(seg.segment(ref_window, normalization=tiled.normalization))
        tiled_p = np.asarray(tiled.autosam_prob)[:, centre - 512 : centre + 512]
        ref_p = np.asarray(ref.autosam_prob)
        seam = np.arange(512 - args.band, 512 + args.band)
        far = np.concatenate([np.arange(512 - 320, 512 - 256), np.arange(512 + 256, 512 + 320)])
        s_abs, s_flip = band_errors(tiled_p, ref_p, seam)
        f_abs, f_flip = band_errors(tiled_p, ref_p, far)
        print(f"{overlap:>8} {len(tiles):>6} {s_abs:>10.4f} {s_flip:>11.2%} {f_abs:>9.4f} {f_flip:>10.2%}", flush=True)
        if tiled.store is not None:
            import shutil

            shutil.rmtree(tiled.store, ignore_errors=True)


def bench_passes(args) -> None:
    from napari_autosam.inference.tiling import segmentation_tiles, tile_grid

    print(f"{'plane':>8} {'old: 1024 px, >=128 overlap':>28} " + " ".join(f"{'new, overlap ' + str(o):>16}" for o in args.overlaps))
    for size in args.sizes:
        old = len(tile_grid((size, size), 1024, 128))
        new = [len(segmentation_tiles((size, size), 1024, o)) for o in args.overlaps]
        print(f"{size:>7}² {old:>28} " + " ".join(f"{n:>16}" for n in new))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="bench", required=True)
    seams = sub.add_parser("seams", help="seam error against the overlap")
    seams.add_argument("--sam", default="tiny", choices=("tiny", "vit_b", "vit_l", "vit_h"))
    seams.add_argument("--overlaps", type=int, nargs="+", default=[0, 32, 64, 128])
    seams.add_argument("--band", type=int, default=32)
    passes = sub.add_parser("passes", help="encoder passes per plane, old and new layout")
    passes.add_argument("--sizes", type=int, nargs="+", default=[2048, 3000, 4096, 8192, 16384])
    passes.add_argument("--overlaps", type=int, nargs="+", default=[0, 64, 128])
    args = parser.parse_args()
    {"seams": bench_seams, "passes": bench_passes}[args.bench](args)


if __name__ == "__main__":
    main()
