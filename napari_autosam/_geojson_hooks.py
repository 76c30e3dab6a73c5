"""napari reader and writer for QuPath GeoJSON (no napari or Qt imports here).

Reader: a ``.geojson`` file, or a ``.json`` file that holds a GeoJSON
FeatureCollection (other JSON is left to other readers), opens as one Labels
layer.  Coordinates are level-0 pixels, so the layer lines up with the slide
shown at level-0 scale; objects spread over more than ``MAX_SIDE`` pixels
are rasterised at a power-of-two downsample and the layer is scaled up to
match.  Each label's class and QuPath object type are in the layer's
``features`` table.

Writer: a Labels layer to ``.geojson`` (detections, one per label, with the
classes the reader found).  The widget's output layers record their level-0
downsample (a slide segmented at a working resolution); other layers are
placed by their scale and translation, taken as level-0 pixels.

napari puts the *centre* of data pixel ``j`` at world ``j·scale + translate``,
while GeoJSON puts pixel edges at integers; both directions convert with
:func:`placement_of` / :func:`layer_transform`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .io.geojson import Placement, is_geojson, looks_like_geojson

#: Longest side of a Labels layer the reader rasterises at full resolution.
MAX_SIDE = 8192


def _handles(path) -> bool:
    path = Path(path)
    if not path.is_file() or not path.name.lower().endswith((".geojson", ".json")):
        return False
    return looks_like_geojson(path)


def napari_get_reader(path: str | list[str]):
    """:func:`read_geojson` for GeoJSON files (``.geojson``, or ``.json`` holding features), else None."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if not paths or not all(_handles(p) for p in paths):
        return None
    return read_geojson


def layer_transform(placement: Placement) -> tuple[tuple[float, float], tuple[float, float]]:
    """napari ``(scale, translate)`` (y, x) of a label image with this placement."""
    d = placement.downsample
    ox, oy = placement.origin
    return (d, d), (oy + d / 2 - 0.5, ox + d / 2 - 0.5)


def placement_of(scale, translate) -> Placement:
    """The inverse of :func:`layer_transform` (scale must be the same along y and x)."""
    sy, sx = (float(s) for s in scale[-2:])
    if not math.isclose(sy, sx, rel_tol=1e-6):
        raise ValueError(f"GeoJSON needs the same scale along y and x, the layer has {sy} and {sx}")
    ty, tx = (float(t) for t in translate[-2:])
    return Placement(sx, (tx - sx / 2 + 0.5, ty - sx / 2 + 0.5))


def read_geojson(path: str | list[str]) -> list[tuple[Any, dict, str]]:
    """Layer-data tuples (one Labels layer per file)."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    return [read_geojson_layer(p) for p in paths]


def read_geojson_layer(path: str | os.PathLike) -> tuple[Any, dict, str]:
    """One file as Labels layer data: instance labels, per-label class and object type in ``features``."""
    import shapely

    from .io.geojson import read_features
    from .io.geojson_labels import objects_to_labels

    path = Path(path)
    objects, messages = read_features(path)
    if objects:
        _, _, maxx, maxy = shapely.bounds(shapely.union_all([o.geometry.envelope for o in objects]))
    else:
        maxx = maxy = 1
    downsample = 1
    while max(maxx, maxy) / downsample > MAX_SIDE:
        downsample *= 2
    placement = Placement(float(downsample))
    shape = (max(1, math.ceil(maxy / downsample)), max(1, math.ceil(maxx / downsample)))
    result = objects_to_labels(objects, shape, placement=placement, source=str(path))
    by_label = result.label_classes
    scale, translate = layer_transform(placement)
    stem = path.name[: -len(".geojson")] if is_geojson(path) else path.stem
    kwargs = {
        "name": f"{stem} objects",
        "scale": scale,
        "translate": translate,
        "features": {"index": np.arange(len(by_label) + 1),
                     "class": ["background"] + [c or "" for c in by_label],
                     "object_type": ["background"] + result.object_types},
        "metadata": {"source": str(path), "messages": messages + result.messages,
                     "geojson": {"class_names": result.class_names, "colors": result.colors,
                                 "classes": {i + 1: c for i, c in enumerate(by_label) if c}}},
    }
    return result.instances, kwargs, "labels"


def write_labels_geojson(path: str | os.PathLike, data: Any, meta: dict[str, Any] | None = None) -> list[str]:
    """Write a Labels layer's data as QuPath GeoJSON detections; return ``[path]``."""
    from .io.geojson import labels_to_features, write_geojson

    meta = meta or {}
    path = Path(path)
    if not path.name.lower().endswith((".geojson", ".json")):
        path = path.with_name(path.name + ".geojson")
    if meta.get("multiscale") and isinstance(data, (list, tuple)):
        data = data[0]
    if len(data.shape) != 2:
        raise ValueError(f"GeoJSON holds one plane; the labels have shape {tuple(data.shape)}")
    metadata = meta.get("metadata") or {}
    made_here = metadata.get("autosam") or {}
    if "downsample" in made_here:  # an output of the Segment section: its pixels' level-0 size is known
        placement = Placement(float(made_here["downsample"]))
    else:
        placement = placement_of(meta.get("scale", (1, 1)), meta.get("translate", (0, 0)))
    info = metadata.get("geojson") or {}
    colors = {name: list(rgb) for name, rgb in (info.get("colors") or {}).items()}
    features = labels_to_features(data, object_type="detection", classes=info.get("classes"), colors=colors,
                                  placement=placement)
    write_geojson(path, features)
    return [str(path)]
