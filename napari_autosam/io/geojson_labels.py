"""QuPath GeoJSON objects rasterised into label images (instances, class ids) at a working resolution.

The objects come from :func:`napari_autosam.io.geojson.read_features`;
polygons are rasterised at pixel centres (:mod:`.polygons`), so labels →
GeoJSON → labels gives every pixel back.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely

from .geojson import OBJECT_TYPES, ImportedObject, Placement, _polygonal, read_features

__all__ = ["GeoJSONLabels", "objects_to_labels", "read_geojson_labels"]


@dataclass
class GeoJSONLabels:
    """Label images rasterised from GeoJSON at the working resolution.

    Attributes
    ----------
    instances : ``H×W`` int32, object ``i`` of the kept objects is label ``i + 1`` (0 background)
    classes : ``H×W`` uint16 class ids (``k`` is ``class_names[k-1]``; 0: background or
        unclassified), or None when no object has a class and none were asked for
    class_names : the class of each id, in order
    colors : class name → RGB, as the file gave them
    object_types : the object type of each label (``object_types[i-1]`` for label ``i``)
    label_classes : the class name (or None) of each label, likewise
    messages : what was clipped, skipped or repaired, one line each
    """

    instances: np.ndarray
    classes: np.ndarray | None
    class_names: list[str]
    colors: dict[str, tuple[int, int, int]]
    object_types: list[str]
    label_classes: list[str | None]
    messages: list[str]


def _kind(object_type: str) -> str:
    """annotation, or detection for QuPath's detection-like types (detection, cell, tile)."""
    return "annotation" if object_type == "annotation" else "detection"


def objects_to_labels(objects: Sequence[ImportedObject], shape: tuple[int, int], *, placement: Placement | None = None,
                      objects_of: str = "all", class_names: Sequence[str] | None = None, source: str = "GeoJSON",
                      instances=None, classes=None) -> GeoJSONLabels:
    """Rasterise objects (level-0 pixels) into ``shape = (H, W)`` label images at the working resolution.

    Parameters
    ----------
    objects : from :func:`read_features`
    placement : how level-0 maps to the working image (default: identity)
    objects_of : ``"all"``, ``"annotation"`` or ``"detection"`` (detection includes QuPath cells and tiles)
    class_names : the known classes, in id order; other names are added after them (and said so)
    instances, classes : ``H×W`` output arrays to fill (e.g. zarr for a big image); default numpy

    Larger objects are drawn first, so objects inside an annotation stay
    visible on top of it.  Parts outside the image are clipped (and said so).
    """
    from .polygons import rasterize

    if objects_of not in ("all",) + OBJECT_TYPES:
        raise ValueError(f"objects must be 'all', 'annotation' or 'detection', got {objects_of!r}")
    placement = placement or Placement()
    height, width = (int(s) for s in shape)
    frame = shapely.box(0, 0, width, height)
    messages: list[str] = []
    clipped = outside = 0
    kept: list[tuple[object, ImportedObject]] = []
    for obj in objects:
        if objects_of != "all" and _kind(obj.object_type) != objects_of:
            continue
        geometry = placement.to_working(obj.geometry)
        if not frame.contains(geometry):
            geometry = _polygonal(geometry.intersection(frame)) if frame.intersects(geometry) else None
            if geometry is None or geometry.is_empty or geometry.area == 0:
                outside += 1
                continue
            clipped += 1
        kept.append((geometry, obj))
    if clipped:
        messages.append(f"{source}: {clipped} object(s) reach outside the {height}×{width} image and were clipped")
    if outside:
        messages.append(f"{source}: {outside} object(s) lie wholly outside the {height}×{width} image and were skipped")
    kept.sort(key=lambda item: -item[0].area)
    names = list(class_names or [])
    unknown = sorted({o.class_name for _, o in kept if o.class_name and o.class_name not in names})
    if unknown and class_names:
        messages.append(f"{source}: class(es) {', '.join(unknown)} are not among {', '.join(class_names)}; "
                        f"added as class id(s) {len(names) + 1}..{len(names) + len(unknown)}")
    names += [n for n in dict.fromkeys(o.class_name for _, o in kept) if n and n not in names]
    geometries = [g for g, _ in kept]
    instances = np.zeros((height, width), np.int32) if instances is None else instances
    rasterize(geometries, list(range(1, len(kept) + 1)), instances)
    if names:
        ids = {n: i + 1 for i, n in enumerate(names)}
        classes = np.zeros((height, width), np.uint16) if classes is None else classes
        rasterize(geometries, [ids.get(o.class_name, 0) for _, o in kept], classes)
    else:
        classes = None
    colors = {o.class_name: o.color for _, o in kept if o.class_name and o.color}
    return GeoJSONLabels(instances, classes, names, colors, [_kind(o.object_type) for _, o in kept],
                         [o.class_name for _, o in kept], messages)


def read_geojson_labels(path: str | os.PathLike, shape: tuple[int, int], **kwargs) -> GeoJSONLabels:
    """:func:`read_features` then :func:`objects_to_labels` (keywords as there); notes in ``messages``."""
    objects, messages = read_features(path)
    result = objects_to_labels(objects, shape, source=str(path), **kwargs)
    result.messages[:0] = messages
    return result
