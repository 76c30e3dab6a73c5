"""``segment``'s whole-slide options: tissue detection and the two-speed path (h first, then SAM where it matters)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..inference.two_speed import SAM_ON

#: Share of the tissue tiles SAM runs on with ``--sam-on uncertain`` unless told.
DEFAULT_SAM_SHARE = 0.2


def add_slide_args(parser) -> None:
    group = parser.add_argument_group("whole slides (default for slides whose labels go to OME-Zarr)")
    group.add_argument("--tissue", default=None, metavar="auto|off|FILE",
                       help="auto (default for slides): detect the tissue and never encode the glass; off: every "
                       "tile; FILE: a mask image (stretched over the slide) or a GeoJSON of regions (level-0 pixels)")
    group.add_argument("--sam-on", choices=SAM_ON, default=None,
                       help="after h(g(I)) on every tissue tile: SAM on the tiles where h is least sure "
                       "(uncertain, default for slides), on every tissue tile (all), or nowhere (none)")
    group.add_argument("--sam-share", type=float, default=DEFAULT_SAM_SHARE, metavar="F",
                       help=f"with --sam-on uncertain: the share of tissue tiles (default {DEFAULT_SAM_SHARE})")
    group.add_argument("--sam-budget", type=float, default=None, metavar="MINUTES",
                       help="stop the SAM pass after about this many minutes, keeping h on the other tiles")
    group.add_argument("--sam-tiles", type=int, default=None, metavar="N", help="SAM on at most N tiles")


def two_speed_applies(args, segmenter, layout, resolution) -> bool:
    """Slides go the two-speed way when asked (``--tissue``/``--sam-on``) or when their labels go to OME-Zarr.

    Not for stacks, instances, previews, probability maps, TIFF outputs or class models (they keep the
    one-pass path).
    """
    if resolution is None or layout.is_stack or args.mode != "semantic" or args.preview or args.save_prob:
        return False
    if getattr(segmenter.checkpoint, "class_heads", None) is not None or segmenter.model.surrogate is None:
        return False
    if getattr(args, "tissue", None) is not None or getattr(args, "sam_on", None) is not None:
        return getattr(args, "format", "auto") != "tiff"
    from ..io.labels_zarr import labels_on_disk

    chosen = getattr(args, "format", "auto")
    return chosen == "ome-zarr" or (chosen == "auto" and labels_on_disk(layout.plane_shape))


def segment_two_speed(segmenter, image, path: Path, out: Path, stem: str, tile, args, resolution) -> None:
    """Tissue, h everywhere, SAM where it matters; one report line with the tissue share and the tile counts."""
    from ..inference.slide_job import choose_tissue, segment_slide
    from ..inference.two_speed import SamPlan
    from ..io.labels_zarr import placement_for
    from ..io.slides import open_slide
    from ..io.tissue import TissueFileError
    from ..io.working import describe
    from ..slide_regions import resolution_facts
    from .progressbar import ProgressBar

    slide = open_slide(path)
    try:
        tissue = choose_tissue(slide, args.tissue or "auto")
    except TissueFileError as error:
        raise ValueError(f"--tissue {error}") from error
    finally:
        slide.close()
    plan = SamPlan(args.sam_on or "uncertain", share=args.sam_share,
                   seconds=None if args.sam_budget is None else 60.0 * args.sam_budget, tiles=args.sam_tiles)
    attributes = {"source": str(path), "resolution": resolution_facts(resolution)}
    task = segment_slide(segmenter, image, out, stem, tissue=tissue, downsample=resolution.downsample,
                         tile=tile or 1024, overlap=args.overlap, plan=plan, placement=placement_for(resolution),
                         attributes=attributes, channels=args.channels)
    done = ProgressBar(unit="tile").run(task)
    result = done.result
    if args.geojson:
        from .geojson import write_labels_geojson

        write_labels_geojson({"autosam": done.paths["autosam"]}, out, stem, resolution)
    shape = "×".join(str(s) for s in image.shape[:2])
    parts = [f"{path.name}: {shape} at {describe(resolution)}",
             f"tissue {tissue.fraction:.1%} ({tissue.kind})",
             f"h on {result.count('h') + result.count('sam')} tiles, SAM on {result.count('sam')}, "
             f"{result.count('skipped')} glass tiles skipped",
             f"h {result.h_seconds:.0f} s, SAM {result.sam_seconds:.0f} s"]
    parts += result.messages + (["cancelled"] if result.cancelled else [])
    names = [p.name for p in done.paths.values()] + [done.table.name]
    print("; ".join(parts) + " → " + ", ".join(names))
    if result.cancelled:
        print(f"note: {path.name}: cancelled; the labels hold what was done", file=sys.stderr)
