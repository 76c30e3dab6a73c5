"""The command line's class options: ``train --classes/--num-classes`` and ``evaluate`` per class.

``segment``'s class outputs are the job layer's (:mod:`napari_autosam.jobs.class_outputs`).
"""

from __future__ import annotations

import sys


def add_class_args(parser) -> None:
    """``--classes FILE`` and ``--num-classes K`` of ``train``."""
    from . import positive_int

    parser.add_argument("--classes", metavar="FILE",
                        help="train a class model: a classes file (id,name[,#rrggbb] lines, CSV, JSON, or a QuPath "
                        "GeoJSON export's class names); masks then hold class ids 0 (background) to K")
    parser.add_argument("--num-classes", type=positive_int, default=None, metavar="K",
                        help="train a class model with K classes named Class 1..K (1: the binary model)")


def train_classes(args):
    """The classes of a ``train`` run: ``--classes``/``--num-classes``, else the ``--init`` model's; None: binary."""
    from ..class_sets import classes_from_metadata, resolve_classes

    classes = resolve_classes(args.classes, args.num_classes)
    if classes is None and args.num_classes is None and args.classes is None and args.init:
        from ..models.checkpoint import read_metadata
        from ..models.store import resolve_model_path

        path = resolve_model_path(args.init)
        classes = classes_from_metadata(read_metadata(path), str(path))
        if classes is not None:
            ids = ", ".join(f"{i} {name}" for i, name in enumerate(classes.names, start=1))
            print(f"note: --init {path.name} is a model of {len(classes)} classes, so this run continues it: each "
                  f"mask's values are read as class ids (0 background, {ids}); give --classes to say otherwise",
                  file=sys.stderr)
    return classes


def note_masks_without_classes(classes, samples) -> None:
    """Say when the masks of a class model hold no class ids above 1: only class 1 is then taught."""
    import numpy as np

    if classes is None or len(classes) < 2 or not samples:
        return
    highest = max(int(np.max(np.asarray(sample.mask))) for sample in samples)
    if highest <= 1:
        print(f"note: the masks hold only 0 and 1, so only class 1 ({classes.names[0]}) is taught; the other "
              f"{len(classes) - 1} class{'es' if len(classes) > 2 else ''} ({', '.join(classes.names[1:])}) "
              "see only background", file=sys.stderr)


def model_classes(model_path):
    """The classes of a checkpoint file (None: a binary model)."""
    from ..class_sets import classes_from_metadata
    from ..models.checkpoint import read_metadata

    return classes_from_metadata(read_metadata(model_path), str(model_path))


def per_class_rows(report: dict) -> list[dict]:
    """A binary model's ``per_class``: one row, the foreground."""
    h = report.get("h")
    return [{"id": 1, "name": "foreground", "dice_autosam": report["autosam"]["dice"],
             "iou_autosam": report["autosam"]["iou"], "dice_h": h["dice"] if h else None,
             "iou_h": h["iou"] if h else None}]


def print_per_class(report: dict) -> None:
    """The per-class table of ``evaluate`` (class models only; a binary model's one row is the mean above)."""
    rows = report.get("per_class") or []
    if len(rows) < 2:
        return
    width = max(len("class"), *(len(f"{r['id']} {r['name']}") for r in rows))
    print(f"\n{'class':<{width}}  {'AutoSAM Dice':>12} {'IoU':>6}  {'h Dice':>6} {'IoU':>6}")
    for r in rows:
        name = f"{str(r['id']) + ' ' + r['name']:<{width}}"
        if r.get("absent"):
            print(f"{name}  absent: in no mask, left out of the means")
            continue
        h = f"{r['dice_h']:>6.3f} {r['iou_h']:>6.3f}" if r["dice_h"] is not None else f"{'-':>6} {'-':>6}"
        print(f"{name}  {r['dice_autosam']:>12.3f} {r['iou_autosam']:>6.3f}  {h}")
