"""``napari-autosam measure``: a label image to a table of objects, region summaries and a slide report."""

from __future__ import annotations

import sys
from pathlib import Path


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def register(subparsers) -> None:
    from . import positive_int

    parser = subparsers.add_parser(
        "measure", help="measure every object of a label image: a table, region summaries and a report",
        description="One row per object (area, perimeter, shape, centroid, stain or channel intensities, "
        "confidence) in µm when the µm/px is known, else in px; a summary per region (the image, the tissue, each "
        "annotation of --regions) and class; and a one-page HTML report.  Whole slides are measured tile by tile.")
    parser.add_argument("labels", metavar="LABELS",
                        help="instance labels (TIFF, PNG or the OME-Zarr folder segment writes) or a class mask")
    parser.add_argument("--image", default=None, metavar="IMAGE",
                        help="the image or slide the labels were made from (its level of the labels' size is used)")
    parser.add_argument("--out", required=True, metavar="objects.csv",
                        help="the object table (.csv, or .parquet with pyarrow); the summary and report go beside it")
    parser.add_argument("--regions", default=None, metavar="FILE.geojson",
                        help="QuPath GeoJSON annotations to summarise over (level-0 pixels)")
    parser.add_argument("--geojson", default=None, metavar="X.geojson",
                        help="also write the objects' outlines with their measurements for QuPath")
    parser.add_argument("--mpp", type=float, default=None, metavar="UM",
                        help="µm per pixel of the labels (default: from the labels or the image)")
    parser.add_argument("--objects", choices=("auto", "instances", "components"), default="auto",
                        help="components: every connected region of each mask value is an object; instances: "
                        "each value is an object; auto (default): components for the _autosam/_h masks segment writes")
    parser.add_argument("--stain", choices=("auto", "hed", "channels"), default="auto",
                        help="intensities as H&E optical densities (hed) or per channel (auto: hed for 8-bit RGB)")
    parser.add_argument("--prob", default=None, metavar="TIFF", help="AutoSAM probability map (segment --save-prob)")
    parser.add_argument("--h-prob", default=None, metavar="TIFF", help="h's probability map (segment --save-prob)")
    parser.add_argument("--classes", default=None, metavar="TIFF", help="class ids of the pixels (an object's class "
                        "is the most frequent id under it)")
    parser.add_argument("--class-names", type=_names, default=None, metavar="A,B,…", help="names of class ids 1, 2, …")
    parser.add_argument("--tile", type=positive_int, default=None, metavar="PX", help="window side (default 2048)")
    parser.add_argument("--workers", type=positive_int, default=2, metavar="N", help="windows measured at once (default 2)")
    parser.set_defaults(func=_measure)


def _measure(args) -> int:
    from ..measure import measure_files
    from ..measure.outputs import write_table
    from ..measure.report import write_report
    from ..measure.tiled import DEFAULT_TILE
    from . import check_output_folder
    from .progressbar import ProgressBar

    out = Path(args.out).expanduser()
    check_output_folder(out.parent, "--out")
    task = measure_files(args.labels, args.image, regions=args.regions, tile=args.tile or DEFAULT_TILE,
                         workers=args.workers, probability=args.prob, h_probability=args.h_prob,
                         classes=args.classes, class_names=args.class_names, mpp=args.mpp, stain=args.stain,
                         objects=args.objects)
    result = ProgressBar(unit="window").run(task)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    stem = stem[: -len("_objects")] if stem.endswith("_objects") else stem
    written = write_table(result.table, out)
    written += write_table(result.summary, out.with_name(f"{stem}_summary.csv"), parquet=False)
    written.append(write_report(out.with_name(f"{stem}_report.html"), title=f"{stem}: measurements",
                                table=result.table, summary=result.summary, calibration=result.calibration,
                                shape=result.shape, thumbnails=result.thumbnails, summary_text=result.summary_text))
    if args.geojson:
        written.append(_write_geojson(args, result))
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"{Path(args.labels).name}: {result.summary_text} → " + ", ".join(Path(p).name for p in written))
    return 0


def _write_geojson(args, result) -> Path:
    """Outlines of the labels in level-0 pixels with every object's measurements (QuPath detections)."""
    from ..io.geojson import Placement, labels_to_features, write_geojson
    from ..measure.outputs import add_measurements

    named = result.table[result.table["class"].astype(bool)]
    classes = dict(zip(named["object_id"].astype(int), named["class"])) or None
    calibration = result.calibration
    features = labels_to_features(result.sources.labels, classes=classes,
                                  placement=Placement(calibration.downsample, calibration.origin),
                                  mpp=calibration.level0_mpp)
    return write_geojson(args.geojson, add_measurements(features, result.table))
