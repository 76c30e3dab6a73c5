"""A class model's outputs of ``segment``: the class label image, the instances' classes, their GeoJSON.

With a class model ``<stem>_classes.tif`` (uint8 class ids from AutoSAM's
fused map; h's as ``<stem>_h_classes.tif``) is written, in instance mode
``<stem>_instance_classes.csv`` (label, class id, class name), and with
``geojson`` ``<stem>_classes.geojson`` (each instance, or each class region,
classified by its class name and colour, as QuPath reads them).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

__all__ = ["write_class_outputs"]


def _instance_table(instances, labels, classes) -> str:
    from ..inference.class_labels import instance_classes

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["label", "class_id", "class_name"])
    for label, class_id in sorted(instance_classes(instances, labels).items()):
        writer.writerow([label, class_id, classes.name_of(class_id) or "background"])
    return out.getvalue()


def _class_geojson(path: Path, labels, instances, classes, resolution) -> Path:
    import numpy as np

    from ..inference.class_labels import instance_classes
    from ..io.geojson import Placement, labels_to_features, mask_to_features, write_geojson

    if labels.ndim != 2:
        raise ValueError("GeoJSON holds one plane: --geojson needs a 2D image, not a stack")
    placement = Placement(resolution.downsample) if resolution is not None else None
    colors = {c.name: list(c.rgb) for c in classes}
    if instances is not None:
        names = {k: classes.name_of(v) for k, v in instance_classes(instances, labels).items() if v}
        features = labels_to_features(np.asarray(instances), classes=names, colors=colors, placement=placement)
    else:
        features = mask_to_features(labels, class_names=classes.names, placement=placement)
    write_geojson(path, features)
    return path


def write_class_outputs(segmenter, image, layout, result, out: Path, stem: str, tile, options,
                        resolution=None, *, run_task=None) -> list[Path]:
    """A class model's outputs of one file (nothing for a binary model); see the module docstring.

    ``options`` is a :class:`~napari_autosam.jobs.options.SegmentOptions`; ``run_task(task, unit)`` runs
    the class segmentation (default: :func:`napari_autosam.progress.run`, without a display).
    """
    import numpy as np

    from ..inference.class_labels import model_classes, segment_classes
    from ..io.atomic import atomic_write_text
    from ..io.images import write_tiff
    from .options import quiet_run

    classes = model_classes(segmenter)
    if classes is None:
        return []
    task = segment_classes(segmenter, image, channel_axis=options.channel_axis, channels=options.channels,
                           tile=tile or None, overlap=options.overlap, normalization=result.normalization,
                           stack=layout.is_stack, preview=options.preview)
    found = (run_task or quiet_run)(task, "window")
    written = []
    for name, labels in (("classes", found.labels), ("h_classes", found.h_labels)):
        if labels is not None:
            written.append(write_tiff(out / f"{stem}_{name}.tif", labels))
    labels = found.labels if found.labels is not None else found.h_labels
    instances = None if result.instances is None else np.asarray(result.instances)
    if instances is not None and labels is not None:
        path = out / f"{stem}_instance_classes.csv"
        atomic_write_text(path, _instance_table(instances, labels, classes))
        written.append(path)
    if options.geojson and labels is not None:
        written.append(_class_geojson(out / f"{stem}_classes.geojson", labels, instances, classes, resolution))
    shares = ", ".join(f"{c.name} {f:.1%}" for c, f in zip(classes, found.fractions))
    print(f"{stem}: classes {shares}")
    return written
