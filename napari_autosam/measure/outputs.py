"""Writing measurements: the object and summary tables, GeoJSON measurements, the report.

All files are written atomically.  No napari or Qt here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..io.atomic import atomic_path, atomic_write_text

_UNITS = (("_um2", " µm^2"), ("_px2", " px^2"), ("_mm2", " mm^2"), ("_um", " µm"), ("_px", " px"),
          ("_pct", " %"), ("_per_mm2", " per mm^2"))


def parquet_available() -> bool:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return False
    return True


def write_table(table, path: str | os.PathLike, *, parquet: bool | None = None) -> list[Path]:
    """Write ``table`` as CSV (or Parquet for a ``.parquet`` path); with pyarrow a Parquet copy beside a CSV.

    ``parquet``: None writes the copy when pyarrow is installed, False never.
    Returns the paths written.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        if not parquet_available():
            raise ValueError(f"{path.name}: writing Parquet needs pyarrow (pip install pyarrow), or write .csv")
        with atomic_path(path) as part:
            table.to_parquet(part, index=False)
        return [path]
    atomic_write_text(path, table.to_csv(index=False, float_format="%.6g", lineterminator="\n"))
    written = [path]
    if parquet is not False and parquet_available():
        written += write_table(table, path.with_suffix(".parquet"))
    return written


def display_name(column: str) -> str:
    """A column's name for people and QuPath: ``area_um2`` → ``Area µm^2``."""
    name = column
    for suffix, unit in _UNITS:
        if name.endswith(suffix):
            name = name[: -len(suffix)] + unit
            break
    name = name.replace("_", " ")
    return name[:1].upper() + name[1:]


#: Columns not copied into GeoJSON measurements (the outline, id and class already say them).
_NOT_MEASUREMENTS = ("object_id", "class", "bbox_x0_px", "bbox_y0_px", "bbox_x1_px", "bbox_y1_px")


def add_measurements(features: list[dict], table) -> list[dict]:
    """Put each object's row into its GeoJSON feature's ``measurements`` (QuPath ≥ 0.4: a name → value map).

    Features are matched by their ``name`` ("autosam <id>", as
    :func:`napari_autosam.io.geojson.labels_to_features` writes them); existing
    measurements are kept.  Returns ``features`` (changed in place).
    """
    columns = [c for c in table.columns if c not in _NOT_MEASUREMENTS]
    names = [display_name(c) for c in columns]
    values = table[columns].to_numpy(dtype=float)
    row_of = {int(i): k for k, i in enumerate(table["object_id"].to_numpy())}
    for feature in features:
        properties = feature.setdefault("properties", {})
        match = re.fullmatch(r"autosam (\d+)", str(properties.get("name", "")))
        k = row_of.get(int(match.group(1))) if match else None
        if k is None:
            continue
        measured = {n: float(round(v, 6)) for n, v in zip(names, values[k]) if np.isfinite(v)}
        properties["measurements"] = {**properties.get("measurements", {}), **measured}
    return features
