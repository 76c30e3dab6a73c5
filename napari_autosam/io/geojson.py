"""QuPath GeoJSON, both ways: label images → a ``FeatureCollection`` and back.

What QuPath writes with *File → Export objects as GeoJSON* and reads with
*File → Import objects*: a ``FeatureCollection`` of ``Feature`` objects whose
``geometry`` is a ``Polygon`` or ``MultiPolygon`` (ellipses and rectangles
arrive as polygons) in **level-0 pixels** of the slide (x right, y down,
origin top-left), and whose ``properties`` hold ``objectType``
(``"annotation"``, ``"detection"``, ``"cell"``; older files write
``object_type``), ``classification`` ``{name, color}`` and ``measurements``.

Label images are at a *working resolution*: ``downsample`` level-0 pixels
per working pixel, and a window may start at a level-0 ``origin``.
:class:`Placement` is the one mapping between the two used here.

Outlines are pixel-exact (:mod:`.polygons`); imported polygons are
rasterised at pixel centres, so labels → GeoJSON → labels gives every pixel
back.  Problems with a file are raised as :class:`GeoJSONError` (one line,
naming the file) or, where a repair is possible, repaired and reported in
``messages``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import mapping

from .atomic import atomic_write_text
from .outlines import label_outlines

OBJECT_TYPES = ("annotation", "detection")
SUFFIXES = (".geojson",)
#: QuPath's default class colours for a few common names; others get a colour from :func:`class_color`.
_PALETTE = [(200, 0, 0), (0, 128, 255), (0, 180, 0), (255, 160, 0), (160, 0, 200), (0, 200, 200), (128, 64, 0),
            (255, 0, 160), (120, 120, 120), (90, 160, 90)]


class GeoJSONError(ValueError):
    """A GeoJSON file or object that cannot be used; the message names the file and what was expected."""


@dataclass(frozen=True)
class Placement:
    """Where a working-resolution label image sits on the slide.

    ``level0 = origin + downsample × working`` for x and y alike.

    Attributes
    ----------
    downsample : level-0 pixels per working pixel (1 for an image at full resolution)
    origin : level-0 ``(x, y)`` of the working image's top-left corner
    """

    downsample: float = 1.0
    origin: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self):
        if not (self.downsample > 0 and np.isfinite(self.downsample)):
            raise ValueError(f"downsample must be a positive number, got {self.downsample}")

    def to_level0(self, geometry):
        ox, oy = self.origin
        return shapely.transform(geometry, lambda xy: xy * self.downsample + (ox, oy))

    def to_working(self, geometry):
        ox, oy = self.origin
        return shapely.transform(geometry, lambda xy: (xy - (ox, oy)) / self.downsample)


def is_geojson(path: str | os.PathLike) -> bool:
    """Whether the name says GeoJSON (``.geojson``); ``.json`` files need :func:`looks_like_geojson`."""
    return Path(path).name.lower().endswith(SUFFIXES)


_HEAD = re.compile(r'\s*(\{\s*"type"\s*:\s*"(FeatureCollection|Feature)"|\[\s*\{\s*"type"\s*:\s*"Feature")')


def looks_like_geojson(path: str | os.PathLike, *, parse_below: int = 32 * 2**20) -> bool:
    """Whether a ``.json``/``.geojson`` file holds a GeoJSON FeatureCollection, Feature or Feature list.

    Files that start with ``{"type": "FeatureCollection"`` (as QuPath writes them) are
    recognised from their first bytes; other files below ``parse_below`` bytes are parsed.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.read(256)
        if _HEAD.match(head):
            return True
        if Path(path).stat().st_size > parse_below:
            return False
        _features_of(_load_json(Path(path)), str(path))
    except (OSError, UnicodeDecodeError, GeoJSONError):
        return False
    return True


def class_color(name: str, index: int = 0) -> list[int]:
    """An RGB colour for a class: from a fixed palette by index."""
    return list(_PALETTE[index % len(_PALETTE)])


def _feature(geometry, object_type: str, label: int, area: float, cls: str | None, color, area_unit: str) -> dict:
    properties: dict = {"objectType": object_type, "name": f"autosam {label}"}
    if cls is not None:
        properties["classification"] = {"name": cls, "color": list(color)}
    properties["measurements"] = {f"Area {area_unit}": round(float(area), 3)}
    return {"type": "Feature", "geometry": mapping(geometry), "properties": properties}


def _features(outlines, object_type: str, classes: Mapping[int, str], colors: Mapping[str, Sequence[int]],
              placement: Placement | None, mpp: float | None, describe) -> list[dict]:
    """Features of ``(label, outline in working pixels)`` pairs; see :func:`labels_to_features`."""
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"object type must be one of {OBJECT_TYPES}, got {object_type!r}")
    placement = placement or Placement()
    names = list(dict.fromkeys(classes.values()))
    colors = {name: list(colors[name]) if name in colors else class_color(name, i) for i, name in enumerate(names)}
    features = []
    for label, outline in outlines:
        geometry = placement.to_level0(outline)
        cls = classes.get(label)
        area, unit = geometry.area, "px^2"
        if mpp:
            area, unit = area * mpp * mpp, "µm^2"
        features.append(_feature(geometry, object_type, label, area, cls, colors.get(cls), unit))
        if describe is not None:
            features[-1]["properties"].update(describe(geometry))
    return features


def labels_to_features(labels, *, object_type: str = "detection", classes: Mapping[int, str] | None = None,
                       colors: Mapping[str, Sequence[int]] | None = None, placement: Placement | None = None,
                       mpp: float | None = None, describe=None) -> list[dict]:
    """One GeoJSON Feature per label of an instance label image, in level-0 pixels.

    Parameters
    ----------
    labels : ``H×W`` integer array (numpy or lazy, read band by band); 0 is background
    object_type : ``"detection"`` (many small objects, e.g. nuclei) or ``"annotation"``
    classes : label → class name (labels missing from it are unclassified)
    colors : class name → ``[r, g, b]``; default a fixed palette
    placement : where the image sits on the slide (default: it *is* level 0)
    mpp : level-0 µm per pixel; the area is then measured in µm² too
    describe : optional ``f(level-0 geometry) → dict`` of more properties for each feature

    Returns
    -------
    list of Feature dicts (Polygon or MultiPolygon, holes kept), by label.
    """
    return _features(label_outlines(labels).items(), object_type, dict(classes or {}), dict(colors or {}),
                     placement, mpp, describe)


def _first_pixel(part) -> tuple[float, float]:
    """``(row, column)`` of a polygon's first pixel in raster order: its top row's leftmost pixel."""
    xy = shapely.get_coordinates(part.exterior)
    top = xy[:, 1].min()
    return float(top), float(xy[xy[:, 1] == top, 0].min())


def _regions(geometry) -> list:
    """The 8-connected regions of one mask value's outline (its parts joined where they meet at a corner),
    in raster order of their first pixel, as :func:`skimage.measure.label` numbers them."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    parts = shapely.get_parts(geometry)
    if len(parts) == 1:
        return [geometry]
    # Parts of one value never share an edge, so two parts that share a vertex meet at a corner there.
    xy, part = shapely.get_coordinates(parts, return_index=True)
    key = (xy[:, 1].astype(np.int64) << 32) + xy[:, 0].astype(np.int64)  # integer pixel corners
    order = np.argsort(key, kind="stable")
    key, part = key[order], part[order]
    meet = (key[1:] == key[:-1]) & (part[1:] != part[:-1])
    a, b = part[:-1][meet], part[1:][meet]
    count, group = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(len(parts),) * 2))
    members = [[] for _ in range(count)]
    for part, g in zip(parts, group.tolist()):
        members[g].append(part)
    regions = [ps[0] if len(ps) == 1 else shapely.MultiPolygon(ps) for ps in members]
    return sorted(regions, key=lambda r: min(_first_pixel(p) for p in shapely.get_parts(r)))


def mask_to_features(mask, *, class_names: Sequence[str] | None = None, object_type: str = "annotation",
                     split: bool = True, placement: Placement | None = None, mpp: float | None = None,
                     describe=None) -> list[dict]:
    """Features of a semantic mask (0 background, 1..K classes; numpy or lazy, read band by band).

    ``split`` makes one feature per connected region (8-connected), else one
    (Multi)Polygon per class.  Value ``k`` is classified ``class_names[k-1]``;
    without names a binary mask is unclassified and values above 1 are
    ``"Class k"``.  ``describe`` as for :func:`labels_to_features`.
    """
    outlines = label_outlines(mask)
    values = sorted(outlines)
    pieces: list[tuple[int, object]] = []
    classes: dict[int, str] = {}
    for value in values:
        name = (class_names[value - 1] if class_names and 0 < value <= len(class_names)
                else None if value == 1 and len(values) == 1 and not class_names else f"Class {value}")
        for region in _regions(outlines[value]) if split else [outlines[value]]:
            pieces.append((len(pieces) + 1, region))
            if name is not None:
                classes[len(pieces)] = name
    colors = {n: class_color(n, i) for i, n in enumerate(class_names or [])}
    return _features(pieces, object_type, classes, colors, placement, mpp, describe)


def feature_collection(features: list[dict]) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


def write_geojson(path: str | os.PathLike, features: list[dict]) -> Path:
    """Write a FeatureCollection atomically (never a half-written file); return the path."""
    text = json.dumps(feature_collection(features), separators=(",", ":"), ensure_ascii=False)
    return atomic_write_text(path, text)


# --- reading --------------------------------------------------------------------------------


@dataclass
class ImportedObject:
    """One object read from GeoJSON: a valid (Multi)Polygon in level-0 pixels and its properties."""

    geometry: object
    object_type: str
    class_name: str | None
    color: tuple[int, int, int] | None = None
    properties: dict = field(default_factory=dict)


def _load_json(path: Path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise GeoJSONError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GeoJSONError(f"{path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise GeoJSONError(f"{path}: not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None


def _features_of(data, source: str) -> list:
    """The feature list of a FeatureCollection, a single Feature or a bare list (QuPath writes all three)."""
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise GeoJSONError(f"{source}: the FeatureCollection has no 'features' list")
        return features
    if isinstance(data, dict) and data.get("type") == "Feature":
        return [data]
    if isinstance(data, list) and all(isinstance(f, dict) and f.get("type") == "Feature" for f in data):
        return data
    found = data.get("type") if isinstance(data, dict) else type(data).__name__
    raise GeoJSONError(f"{source}: expected a GeoJSON FeatureCollection (as QuPath exports), found {found!r}")


def _classification(properties: dict) -> tuple[str | None, tuple[int, int, int] | None]:
    cls = properties.get("classification")
    if isinstance(cls, str):
        return cls or None, None
    if not isinstance(cls, dict):
        return None, None
    name = cls.get("name")
    if name is None and isinstance(cls.get("names"), list):  # derived classes: "Tumor: Positive"
        name = ": ".join(str(n) for n in cls["names"])
    color = cls.get("color")
    if isinstance(color, list) and len(color) >= 3 and all(isinstance(c, (int, float)) for c in color[:3]):
        color = tuple(int(np.clip(c, 0, 255)) for c in color[:3])
    elif isinstance(cls.get("colorRGB"), int):  # QuPath ≤ 0.3: packed ARGB
        packed = cls["colorRGB"] & 0xFFFFFF
        color = ((packed >> 16) & 255, (packed >> 8) & 255, packed & 255)
    else:
        color = None
    return (str(name) if name else None), color


def _polygonal(geometry):
    """The polygonal part of a geometry (lines and points dropped), or None."""
    if geometry.geom_type in ("Polygon", "MultiPolygon"):
        return geometry
    parts = [g for g in getattr(geometry, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else None


def parse_features(data, source: str = "GeoJSON") -> tuple[list[ImportedObject], list[str]]:
    """Objects of parsed GeoJSON, with notes about what was skipped or repaired.

    Features without a geometry, with points or lines only, or with broken
    coordinates are skipped; self-intersecting polygons are repaired with
    shapely's ``make_valid``.  Each kind of problem gives one note.
    """
    objects: list[ImportedObject] = []
    problems: dict[str, int] = {}

    def note(kind: str) -> None:
        problems[kind] = problems.get(kind, 0) + 1

    for feature in _features_of(data, source):
        if not isinstance(feature, dict):
            note("are not GeoJSON Feature objects and were skipped")
            continue
        geometry = feature.get("geometry")
        properties = feature.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        if not geometry:
            note("had no geometry and were skipped")
            continue
        try:
            shape = shapely.geometry.shape(geometry)
        except Exception:  # noqa: BLE001 (shapely raises several types for malformed coordinates)
            shape = None
        if shape is None or not np.all(np.isfinite(shapely.get_coordinates(shape))):
            note("had malformed coordinates and were skipped")
            continue
        if not shape.is_valid:
            shape = shapely.make_valid(shape)
            note("were self-intersecting or otherwise invalid and were repaired with make_valid")
        shape = _polygonal(shape)
        if shape is None or shape.is_empty or shape.area == 0:
            note("are points or lines (no area) and were skipped")
            continue
        object_type = str(properties.get("objectType") or properties.get("object_type") or "annotation").lower()
        name, color = _classification(properties)
        objects.append(ImportedObject(shape, object_type, name, color, properties))
    messages = [f"{source}: {n} feature(s) {kind}" for kind, n in problems.items()]
    return objects, messages


def read_features(path: str | os.PathLike) -> tuple[list[ImportedObject], list[str]]:
    """Objects of a GeoJSON file (see :func:`parse_features`); raises :class:`GeoJSONError` for bad files."""
    path = Path(path)
    return parse_features(_load_json(path), source=str(path))
