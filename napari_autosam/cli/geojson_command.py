"""``napari-autosam export-geojson`` and ``import-geojson``: label images ↔ QuPath GeoJSON.

Coordinates in the GeoJSON are level-0 pixels of the slide; a label image
made at a working resolution gives ``--downsample`` (level-0 pixels per
label pixel) and, for a window of the slide, ``--origin X,Y``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _origin(text: str) -> tuple[float, float]:
    import argparse

    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y in level-0 pixels, like 4096,0, got {text!r}") from None
    return x, y


def _placement_arguments(parser) -> None:
    from .resolution import add_resolution_args

    parser.add_argument("--downsample", type=float, default=None, metavar="F",
                        help="level-0 pixels per label pixel (default: from --like and --mpp/--level, else 1)")
    parser.add_argument("--origin", type=_origin, default=(0.0, 0.0), metavar="X,Y",
                        help="level-0 pixel of the label image's top-left corner (default 0,0)")
    add_resolution_args(parser, what="the --like slide")


def register(subparsers) -> None:
    export = subparsers.add_parser(
        "export-geojson", help="write a label image or mask as QuPath GeoJSON",
        description="One Polygon/MultiPolygon feature per object (holes kept) in level-0 pixel coordinates, with "
        "objectType, classification and the area; QuPath opens it with File > Import objects.")
    export.add_argument("labels", metavar="LABELS", help="instance labels or a mask (TIFF, PNG)")
    export.add_argument("--out", required=True, metavar="X.geojson", help="the GeoJSON file to write")
    export.add_argument("--objects", choices=("detection", "annotation"), default=None,
                        help="QuPath object type (default: detection for instance labels, annotation for masks)")
    export.add_argument("--kind", choices=("auto", "instances", "semantic"), default="auto",
                        help="instances: each value is an object; semantic: each value is a class and every "
                        "connected region an object; auto (default): semantic for 0/1 and 0/255 masks")
    export.add_argument("--classes", type=_names, default=None, metavar="A,B,…",
                        help="class names: of mask values 1, 2, … (semantic), or of every object (instances)")
    export.add_argument("--like", default=None, metavar="SLIDE",
                        help="the slide the labels were made from: gives the downsample (with --mpp/--level, the "
                        "working resolution they were made at) and µm per pixel for areas in µm²")
    _placement_arguments(export)
    export.set_defaults(func=_export)

    imp = subparsers.add_parser(
        "import-geojson", help="rasterise QuPath GeoJSON into a label image",
        description="Rasterise the polygons of a QuPath GeoJSON export (annotations and detections, with classes) "
        "into instance labels of the size of --like, and class ids when the objects have classes.")
    imp.add_argument("geojson", metavar="X.geojson", help="a GeoJSON FeatureCollection (QuPath: Export objects)")
    imp.add_argument("--like", required=True, metavar="IMAGE",
                     help="the image or slide the labels go with: gives the size (of a slide: at --mpp/--level)")
    imp.add_argument("--out", required=True, metavar="LABELS.tif", help="instance labels to write (int32 TIFF)")
    imp.add_argument("--objects", choices=("all", "annotation", "detection"), default="all",
                     help="which QuPath objects to import (default all; detection includes cells)")
    imp.add_argument("--classes", type=_names, default=None, metavar="A,B,…",
                     help="known class names in id order (others are added after them)")
    _placement_arguments(imp)
    imp.set_defaults(func=_import)


def _like(args):
    """The ``--like`` image (lazy) and its working resolution (None for an ordinary image), or (None, None)."""
    from .resolution import open_input, say

    if not args.like:
        return None, None
    image, resolution, note = open_input(Path(args.like), args)
    say(note)
    return image, resolution


def _placement(args, resolution):
    from ..io.geojson import Placement

    downsample = args.downsample or (resolution.downsample if resolution is not None else 1.0)
    return Placement(downsample, args.origin)


def _level0_mpp(resolution) -> float | None:
    if resolution is None or resolution.mpp is None:
        return None
    return float(sum(resolution.mpp)) / 2 / resolution.downsample


def _read_plane(path: str, what: str, image=None):
    """A 2D plane of an image file (or the given lazy ``image``); the shape must be one plane."""
    from ..inference.inputs import image_layout
    from ..io.images import ImageReadError, open_lazy

    if image is None:
        try:
            image = open_lazy(path)
        except ImageReadError as exc:
            raise ValueError(f"{path}: {exc.reason}") from exc
    layout = image_layout(image)
    if layout.is_stack:
        raise ValueError(f"{path}: GeoJSON holds one plane, but this {what} is a stack of shape {layout.shape}")
    return image, layout


def _export(args) -> int:
    from ..io.overwrite import check_outputs
    from ..jobs.geojson_outputs import export_labels

    check_outputs([args.out], [args.labels] + ([args.like] if args.like else []))
    labels, layout = _read_plane(args.labels, "label image")
    if layout.kind != "2d":
        raise ValueError(f"{args.labels}: expected a 2D label image or mask, got shape {layout.shape}")
    if labels.dtype.kind not in "biu":
        raise ValueError(f"{args.labels}: a label image or mask holds integers, got {labels.dtype} values")
    _, resolution = _like(args)
    count = export_labels(labels, Path(args.out), kind=args.kind, objects=args.objects, classes=args.classes,
                          placement=_placement(args, resolution), mpp=_level0_mpp(resolution))
    print(f"{args.labels}: {count} object(s) → {args.out}")
    return 0


#: Label images with more pixels than this are rasterised into zarr arrays on disk, tile by tile.
IN_MEMORY_PIXELS = 8192 * 8192


def _outputs(shape: tuple[int, int], scratch: Path) -> dict:
    """Output arrays for a big image (zarr in ``scratch``), or nothing (numpy in memory)."""
    import numpy as np

    from ..inference.tiling import create_array

    if shape[0] * shape[1] <= IN_MEMORY_PIXELS:
        return {}
    scratch.mkdir(parents=True, exist_ok=True)
    return {"instances": create_array(shape, np.int32, store=scratch, name="instances"),
            "classes": create_array(shape, np.uint16, store=scratch, name="classes")}


def _max(array) -> int:
    import numpy as np

    from ..inference.tiling import blocks

    return max(int(np.max(np.asarray(array[w]))) for w in blocks(tuple(array.shape)))


def _import(args) -> int:
    import json

    from ..io.atomic import atomic_write_text
    from ..io.geojson_labels import read_geojson_labels
    from ..io.images import write_array
    from ..io.overwrite import check_outputs

    check_outputs([args.out], [args.geojson, args.like])  # e.g. --out the --like image itself
    image, resolution = _like(args)
    _, layout = _read_plane(args.like, "image", image)
    out = Path(args.out)
    scratch = out.parent / f".{out.name}.autosam-scratch"
    try:
        arrays = _outputs(layout.plane_shape, scratch)
        result = read_geojson_labels(args.geojson, layout.plane_shape, placement=_placement(args, resolution),
                                     objects_of=args.objects, class_names=args.classes, **arrays)
        for message in result.messages:
            print(f"note: {message}", file=sys.stderr)
        written = [write_array(out, result.instances)]
        if result.classes is not None:
            stem = out.name[: -len("".join(out.suffixes))] if out.suffixes else out.name
            written.append(write_array(out.with_name(f"{stem}_classes.tif"), result.classes))
            names = {"class_names": result.class_names, "colors": {k: list(v) for k, v in result.colors.items()}}
            written.append(atomic_write_text(out.with_name(f"{stem}_classes.json"), json.dumps(names, indent=1)))
        count = _max(result.instances)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    classes = ", ".join(f"{i + 1} {n}" for i, n in enumerate(result.class_names))
    print(f"{args.geojson}: {count} object(s)" + (f"; class ids {classes}" if classes else "")
          + " → " + ", ".join(p.name for p in written))
    return 0
