"""``napari-autosam review``: where to correct next, as a CSV of regions sorted by how unsure the model is.

Each tile of the image (each slice of a stack) is one row ``x,y,width,height,score``
in level-0 pixels, highest score first (see :mod:`napari_autosam.inference.review_scores`
for what the score is); ``#`` lines above the column names say which image,
model and resolution were used.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ..inference.tiling import REVIEW_OVERLAP, REVIEW_TILE  # light: no torch

#: Review tiles (each tile is one region): the one default of the engine and the widget.
TILE, OVERLAP = REVIEW_TILE, REVIEW_OVERLAP


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "review", help="rank the tiles of an image by how unsure the model is (where to correct next)",
        description="Segment an image tile by tile and score each tile by the disagreement of h(g(I)) with AutoSAM, "
        "the share of probabilities near 0.5 and SAM's predicted IoU. Writes one CSV row per tile "
        "(x,y,width,height,score in level-0 pixels), highest score first.")
    parser.add_argument("image", metavar="IMAGE", help="an image or slide (TIFF/OME-TIFF, PNG, JPEG, SVS, NDPI, …)")
    parser.add_argument("--model", metavar="PATH", help="a g/h checkpoint or model-store folder "
                        "(default: the untrained prompt generator, which makes the ranking meaningless)")
    parser.add_argument("--out", required=True, metavar="review.csv", help="the CSV file to write")
    parser.add_argument("--sam", default=None, metavar="NAME|PATH",
                        help="SAM variant or checkpoint (default: the model's SAM, else vit_b)")
    parser.add_argument("--tile", type=int, default=TILE, metavar="N", help=f"region size in pixels (default {TILE})")
    parser.add_argument("--overlap", type=int, default=OVERLAP, metavar="N", help=f"tile overlap (default {OVERLAP})")
    parser.add_argument("--preview", action="store_true",
                        help="h(g(I)) only (no SAM): much faster, scores by the share of unsure probabilities alone")
    from .resolution import add_resolution_args

    add_resolution_args(parser, what="a slide")
    parser.add_argument("--channels", default=None, metavar="C[,C[,C]]", help="channels shown to SAM")
    parser.add_argument("--stack", action="store_true", help="treat a 3D image as a Z stack even with <= 4 slices")
    parser.add_argument("--device", default=None, help="cuda, mps, cpu or auto (default: auto)")
    parser.add_argument("--cache-dir", default=None, metavar="DIR", help="keep SAM embeddings on disk here")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from ..inference import Segmenter
    from ..inference.inputs import image_layout
    from ..inference.review_scores import review, write_review_csv
    from ..io.geojson import Placement
    from ..io.working import describe
    from ..sam.cache import EmbeddingCache
    from .progressbar import ProgressBar
    from .resolution import open_input, say
    from .segment_command import _channels, _load_model, _load_sam

    if not (args.tile >= 64 and 0 <= args.overlap < args.tile):
        raise ValueError(f"need --tile >= 64 and 0 <= --overlap < --tile, got {args.tile} and {args.overlap}")
    from ..io.overwrite import check_outputs
    from ..jobs.preflight import segment_inputs

    check_outputs([args.out], segment_inputs([args.image], "review"))  # before SAM loads
    sam = _load_sam(args)
    model = _load_model(args, sam)
    recorded = model.metadata.get("resolution") if model is not None else None
    try:
        image, resolution, note = open_input(Path(args.image), args, recorded)
    except ValueError as exc:
        raise ValueError(f"{args.image}: {exc}") from exc
    say(note)
    layout = image_layout(image, stack=True if args.stack else None)
    downsample = resolution.downsample if resolution is not None else 1.0
    placement = Placement(downsample)
    cache = EmbeddingCache(sam, args.cache_dir) if args.cache_dir else None
    segmenter = Segmenter(sam, model, cache=cache)
    out = Path(args.out)
    scratch = out.parent / f".{out.name}.autosam-scratch"
    try:
        task = review(segmenter, image, tile=args.tile, overlap=args.overlap, preview=args.preview,
                      channels=_channels(args.channels) if args.channels else None, store=scratch,
                      stack=layout.is_stack)
        regions, result = ProgressBar(unit="tile").run(task)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    header = {"image": args.image, "model": args.model or "untrained default", "sam": getattr(sam, "variant", "?"),
              "mode": "preview (h only)" if args.preview else "AutoSAM",
              "resolution": describe(resolution) if resolution is not None else "the image as stored",
              "level": resolution.level if resolution is not None else 0, "downsample": f"{downsample:g}",
              "um_per_px": (f"{sum(resolution.mpp) / 2:g}" if resolution is not None and resolution.mpp
                            else "unknown"),
              "score": "mean of 1-Dice(h, AutoSAM), share of probabilities in 0.25..0.75, 1-SAM predicted IoU"}
    write_review_csv(out, regions, placement=placement, header=header)
    if result.cancelled:
        print("cancelled: only the tiles reached are listed", file=sys.stderr)
    top = regions[0] if regions else None
    print(f"{args.image}: {len(regions)} region(s) → {out}"
          + (f"; most unsure at x={top.region[2] * downsample:g}, y={top.region[0] * downsample:g} "
             f"(score {top.score:.3f})" if top else ""))
    return 0
