"""The classes of a multi-class model: ids, names and colours, read from one small file.

A class model segments ``K`` classes with ids ``1..K`` (0 is background).
Where the classes come from:

* a classes file (:func:`read_classes`): text/CSV lines ``id,name[,#rrggbb]``
  (or tab-separated, or one name per line, ids counting from 1), or JSON
  (a list of names, or of ``{"id", "name", "color"}`` objects, or
  ``{"classes": [...]}``);
* a number of classes (:func:`default_classes`): names ``Class 1..K`` and a
  fixed palette;
* the class names of a QuPath GeoJSON export (:func:`classes_from_geojson`).

The same :class:`ClassSet` goes into a checkpoint's metadata (key
``"classes"``, a list of ``{"id", "name", "color"}``), drives training
(:func:`class_ids` keeps a mask's class ids instead of binarising it), and
gives the labels layer its colours (:func:`label_colors`).  Problems are
raised as :class:`ClassesError` in one line naming the file and the id.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Most classes a model may have (the mask decoder runs once per class and image).
MAX_CLASSES = 64
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})$")


class ClassesError(ValueError):
    """A classes file or class mask that cannot be used; one line naming the file and what was expected."""


@dataclass(frozen=True)
class ClassInfo:
    """One class: id (1..K), name and ``#rrggbb`` colour."""

    id: int
    name: str
    color: str

    @property
    def rgb(self) -> tuple[int, int, int]:
        """The colour as 0-255 integers."""
        value = int(self.color[1:], 16)
        return (value >> 16) & 255, (value >> 8) & 255, value & 255

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "color": self.color}


@dataclass(frozen=True)
class ClassSet:
    """The classes of a model, ids ``1..K`` in order; ``source`` names where they came from."""

    classes: tuple[ClassInfo, ...]
    source: str = "classes"

    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self):
        return iter(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def to_metadata(self) -> list[dict]:
        """The checkpoint's ``"classes"`` entry."""
        return [c.to_dict() for c in self.classes]

    def name_of(self, class_id: int) -> str | None:
        """The name of class ``class_id`` (None for background or an unknown id)."""
        return self.classes[class_id - 1].name if 1 <= class_id <= len(self.classes) else None


def _palette(index: int) -> str:
    from .io.geojson import class_color  # the palette QuPath exports use too: one home

    r, g, b = class_color("", index)
    return f"#{r:02x}{g:02x}{b:02x}"


def _color(value, source: str, where: str) -> str:
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, int) and 0 <= v <= 255
                                                                   for v in value):
        return "#{:02x}{:02x}{:02x}".format(*value)
    match = _HEX.match(str(value).strip()) if isinstance(value, str) else None
    if match is None:
        raise ClassesError(f"{source}: {where}: colour {value!r} is not #rrggbb or [r, g, b]")
    return "#" + match.group(1).lower()


def make_classes(entries: Sequence, source: str = "classes") -> ClassSet:
    """A :class:`ClassSet` from names, ``(id, name[, colour])`` tuples or ``{"id", "name", "color"}`` dicts.

    Ids must be ``1..K`` (each once; entries without an id count on from
    the previous one); names must be unique and not empty.
    """
    out: list[ClassInfo] = []
    for i, entry in enumerate(entries):
        where = f"class {i + 1}"
        if isinstance(entry, str):
            entry = {"name": entry}
        elif isinstance(entry, (list, tuple)):
            entry = dict(zip(("id", "name", "color"), entry))
        if not isinstance(entry, Mapping):
            raise ClassesError(f"{source}: {where} is {entry!r}; expected a name or {{\"id\", \"name\", \"color\"}}")
        unknown = sorted(set(entry) - {"id", "name", "color"})
        if unknown:
            raise ClassesError(f"{source}: {where} has unknown keys {unknown}; expected id, name, color")
        class_id = entry.get("id", len(out) + 1)
        try:
            class_id = int(str(class_id).strip())
        except ValueError:
            raise ClassesError(f"{source}: {where}: id {entry.get('id')!r} is not a whole number") from None
        if class_id != len(out) + 1:
            raise ClassesError(f"{source}: {where} has id {class_id}; expected id {len(out) + 1} "
                               f"(ids run 1..K in order, 0 is background)")
        name = str(entry.get("name") or "").strip()
        if not name:
            raise ClassesError(f"{source}: class id {class_id} has no name")
        if name in {c.name for c in out}:
            raise ClassesError(f"{source}: class name {name!r} appears twice")
        color = entry.get("color")
        color = _palette(len(out)) if color in (None, "") else _color(color, source, f"class id {class_id}")
        out.append(ClassInfo(class_id, name, color))
    if not out:
        raise ClassesError(f"{source}: no classes were given")
    if len(out) > MAX_CLASSES:
        raise ClassesError(f"{source}: {len(out)} classes; at most {MAX_CLASSES} are supported")
    return ClassSet(tuple(out), source)


def default_classes(num_classes: int) -> ClassSet:
    """``Class 1..K`` with palette colours (``train --num-classes K``)."""
    if not isinstance(num_classes, int) or not 1 <= num_classes <= MAX_CLASSES:
        raise ClassesError(f"--num-classes: expected a whole number from 1 to {MAX_CLASSES}, got {num_classes!r}")
    return make_classes([f"Class {k}" for k in range(1, num_classes + 1)], f"--num-classes {num_classes}")


def _text_entries(text: str) -> list:
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):  # blank lines and comments
            continue
        fields = [f.strip() for f in re.split(r"[,\t;]", line)]
        if not entries and fields[0].lower() == "id":  # a CSV header
            continue
        if len(fields) == 1:
            entries.append({"name": fields[0]})
        else:
            entries.append(dict(zip(("id", "name", "color"), fields[:3])))
    return entries


def read_classes(path: str | os.PathLike) -> ClassSet:
    """Read a classes file (``.json``, ``.csv``, ``.txt``, ``.tsv``; see the module docstring).

    A ``.geojson`` file gives the class names of its objects
    (:func:`classes_from_geojson`).
    """
    path = Path(path)
    if not path.is_file():
        raise ClassesError(f"{path}: no such classes file")
    if path.suffix.lower() == ".geojson":
        return classes_from_geojson(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClassesError(f"{path}: cannot read the classes file ({exc})") from None
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ClassesError(f"{path}: not valid JSON ({exc})") from None
        if isinstance(data, dict):
            data = data.get("classes")
        if not isinstance(data, list):
            raise ClassesError(f"{path}: expected a list of classes (or {{\"classes\": [...]}})")
        return make_classes(data, str(path))
    return make_classes(_text_entries(text), str(path))


def classes_from_geojson(path: str | os.PathLike) -> ClassSet:
    """The classes named in a QuPath GeoJSON export, in order of appearance, with the file's colours."""
    from .io.geojson import GeoJSONError, read_features

    try:
        objects, _ = read_features(path)
    except GeoJSONError as exc:
        raise ClassesError(str(exc)) from None
    names = list(dict.fromkeys(o.class_name for o in objects if o.class_name))
    if not names:
        raise ClassesError(f"{path}: no object in this GeoJSON file has a classification")
    colors = {o.class_name: o.color for o in objects if o.class_name and o.color}
    return make_classes([{"name": n, "color": list(colors[n]) if n in colors else None} for n in names], str(path))


def classes_from_metadata(meta: Mapping, source: str = "checkpoint") -> ClassSet | None:
    """The classes of a checkpoint's metadata; None for a binary model (no ``"classes"`` key)."""
    entries = meta.get("classes")
    if entries is None:
        return None
    if not isinstance(entries, list):
        raise ClassesError(f"{source}: metadata 'classes' is a {type(entries).__name__}; expected a list")
    return make_classes(entries, source)


def resolve_classes(classes_file: str | os.PathLike | None = None, num_classes: int | None = None) -> ClassSet | None:
    """The classes asked for on the command line (``--classes FILE`` / ``--num-classes K``), or None.

    Both together must agree on K.  One class is the binary model of
    today, so it gives None.
    """
    found = read_classes(classes_file) if classes_file else None
    if num_classes is not None:
        if found is not None and len(found) != num_classes:
            raise ClassesError(f"{classes_file}: {len(found)} classes but --num-classes {num_classes}")
        found = found or default_classes(num_classes)
    return found if found is not None and len(found) > 1 else None


def class_ids(mask, classes: ClassSet, label: str) -> np.ndarray:
    """A mask of class ids checked against ``classes``: ``H×W`` (or any shape) uint8/uint16.

    Raises :class:`ClassesError` naming ``label`` (the mask's file) and the
    offending id when the mask holds ids above K, negative or fractional values.
    """
    mask = np.asarray(mask)
    if mask.dtype.kind == "b":
        return mask.astype(np.uint8)
    if mask.dtype.kind == "f":
        if not np.all(np.isfinite(mask)) or not np.all(mask == np.round(mask)):
            raise ClassesError(f"{label}: the mask has fractional or NaN values; class masks hold ids 0..{len(classes)}")
    elif mask.dtype.kind not in "iu":
        raise ClassesError(f"{label}: the mask has dtype {mask.dtype}; expected class ids 0..{len(classes)}")
    if mask.size:
        low, high = int(mask.min()), int(mask.max())
        if low < 0:
            raise ClassesError(f"{label}: the mask holds class id {low}; ids run 0 (background) to {len(classes)}")
        if high > len(classes):
            hint = " (it looks like an instance label image: train it without classes)" if high > 2 * len(classes) \
                else ""
            raise ClassesError(f"{label}: the mask holds class id {high} but {classes.source} defines "
                               f"{len(classes)} classes (ids 1..{len(classes)}){hint}")
    return mask.astype(np.uint8 if len(classes) < 255 else np.uint16)


def label_colors(classes: ClassSet | None) -> dict[int | None, tuple[float, float, float, float]]:
    """RGBA (0-1) per label value for a labels layer: background transparent, class ``k`` its colour.

    ``None`` (any other value) is grey; for napari's ``DirectLabelColormap(color_dict=...)``.
    """
    colors: dict[int | None, tuple[float, float, float, float]] = {None: (0.5, 0.5, 0.5, 1.0),
                                                                   0: (0.0, 0.0, 0.0, 0.0)}
    for c in classes or ():
        colors[c.id] = tuple(v / 255 for v in c.rgb) + (1.0,)
    return colors


def class_choices(classes: ClassSet | None) -> list[tuple[str, int]]:
    """``(shown text, label value)`` for a class picker: one per class, or a single foreground."""
    if not classes:
        return [("foreground", 1)]
    return [(f"{c.id}: {c.name}", c.id) for c in classes]


def training_classes(train_settings: Mapping, model=None) -> ClassSet | None:
    """The classes a fine-tuning run uses: the widget's (``train_settings["classes"]``), else the model's.

    ``model`` is the active :class:`~napari_autosam.models.checkpoint.ModelCheckpoint` (or None).
    """
    chosen = train_settings.get("classes")
    if chosen:
        return make_classes(list(chosen), "the class table")
    if model is not None and getattr(model, "class_heads", None) is not None:
        return classes_from_metadata(model.metadata, "the model")
    return None


def per_class_text(meta: Mapping) -> str | None:
    """A model's validation Dice per class in words, e.g. ``"AutoSAM per class: Tumor 0.81, Stroma 0.64"``.

    None for a binary model or one without per-class figures (read from
    ``metrics["val_per_class"]`` of its metadata, as training writes them).
    """
    classes = classes_from_metadata(meta, "the model")
    scores = ((meta.get("metrics") or {}).get("val_per_class") or {}).get("autosam")
    if classes is None or not scores or len(scores) != len(classes):
        return None
    return "AutoSAM per class: " + ", ".join(f"{c.name} {d:.2f}" for c, d in zip(classes, scores))
