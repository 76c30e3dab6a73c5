"""``napari-autosam evaluate``: Dice and IoU of AutoSAM and of h on a folder of images and masks."""

from __future__ import annotations

import json
from pathlib import Path

from . import channel_list
from .precision import add_precision_argument, apply_precision


def _print_table(report: dict) -> None:
    rows = report["autosam"]["per_image"]
    h_rows = report["h"]["per_image"] if report["h"] else [None] * len(rows)
    width = max([len("image")] + [len(r["name"]) for r in rows])
    print(f"{'image':<{width}}  {'AutoSAM Dice':>12} {'IoU':>6}  {'h Dice':>6} {'IoU':>6}")
    for row, h_row in zip(rows, h_rows):
        h_text = f"{h_row['dice']:>6.3f} {h_row['iou']:>6.3f}" if h_row else f"{'-':>6} {'-':>6}"
        print(f"{row['name']:<{width}}  {row['dice']:>12.3f} {row['iou']:>6.3f}  {h_text}")
    h = report["h"]
    h_text = f"{h['dice']:>6.3f} {h['iou']:>6.3f}" if h else f"{'-':>6} {'-':>6}"
    print(f"{'mean':<{width}}  {report['autosam']['dice']:>12.3f} {report['autosam']['iou']:>6.3f}  {h_text}")


def _run(args) -> int:
    from ..models.checkpoint import load_checkpoint, read_metadata
    from ..models.store import resolve_model_path, sam_for_model
    from ..sam.cache import EmbeddingCache
    from ..training import evaluate
    from . import open_sam
    from .progressbar import ProgressBar
    from .resolution import load_samples_at

    model_path = resolve_model_path(args.model)
    channels = args.channels
    recorded = read_metadata(model_path).get("resolution")
    from .class_options import model_classes, per_class_rows, print_per_class

    classes = model_classes(model_path)  # a class model's masks keep their class ids
    samples, _ = load_samples_at(args.images, args.masks, args, channels=channels, recorded=recorded,
                                 classes=classes)
    bar = ProgressBar(unit="image")
    sam = open_sam(sam_for_model(args.sam, model_path), args.device, bar)
    apply_precision(sam, args)
    model = load_checkpoint(model_path, device=next(sam.parameters()).device)
    cache = EmbeddingCache(sam, Path(args.cache_dir).expanduser()) if args.cache_dir else None
    report = bar.run(evaluate(sam, model, samples, cache=cache)).to_dict()
    report["model"] = str(model_path)
    report.setdefault("per_class", per_class_rows(report))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"model: {model_path}")
        _print_table(report)
        print_per_class(report)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Dice and IoU of a trained model on images with masks",
        description="Segment every image with AutoSAM (g + frozen SAM) and with h, threshold at 0.5, "
        "and compare with the masks (matched by file stem); prints per-image and mean Dice and IoU.",
    )
    parser.add_argument("--images", required=True,
                        help="folder of images (TIFF, PNG, JPEG) or whole slides (SVS, NDPI, MRXS, SCN, BIF, …)")
    parser.add_argument("--masks", required=True, help="folder of masks or label images (foreground > 0)")
    parser.add_argument("--model", required=True, help="model checkpoint, or a model-store folder (its active version)")
    parser.add_argument("--sam", default=None,
                        help="SAM variant (vit_b, vit_l, vit_h, tiny) or checkpoint file (default: the one the model was trained for)")
    parser.add_argument("--channels", type=channel_list, default=None,
                        help="comma-separated channels to use (1 gray, or 2-3 as R,G,B)")
    parser.add_argument("--cache-dir", help="SAM embeddings on disk (reused, and filled for later runs)")
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    add_precision_argument(parser)
    parser.add_argument("--json", action="store_true",
                        help='one JSON object on stdout: {"autosam": {"dice", "iou", "per_image"}, "h": {...}, '
                        '"per_class": [{"id", "name", "dice_autosam", "iou_autosam", "dice_h", "iou_h"}]}')
    from .resolution import add_resolution_args

    add_resolution_args(parser, what="the images (default: the model's resolution)")
    parser.set_defaults(func=_run)
