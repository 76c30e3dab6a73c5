"""The object table: block columns (working pixels) turned into named columns with units.

Positions are level-0 pixels in QuPath's convention (pixel ``(0, 0)`` covers
``[0, 1)``, so its centre is at 0.5), the coordinates of the GeoJSON
outlines; lengths and areas are µm and µm² when the µm/px is known, else
level-0 pixels, and the column names say which (``area_um2`` or
``area_px2``).  No napari or Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Columns read as lengths (scaled once) and areas (scaled twice) from the block columns.
_LENGTHS = (("perimeter", "perimeter"), ("equivalent_diameter", "equivalent_diameter"),
            ("major_axis", "major_axis"), ("minor_axis", "minor_axis"))


@dataclass(frozen=True)
class Calibration:
    """How working pixels map to level-0 pixels and micrometres.

    Attributes
    ----------
    mpp : µm per working pixel (the labels' pixels), or None when unknown
    downsample : level-0 pixels per working pixel
    origin : level-0 ``(x, y)`` of the working image's top-left corner
    """

    mpp: float | None = None
    downsample: float = 1.0
    origin: tuple[float, float] = (0.0, 0.0)

    @property
    def calibrated(self) -> bool:
        return self.mpp is not None

    @property
    def length_unit(self) -> str:
        """"um" or "px" (level-0 pixels): the unit in the column names."""
        return "um" if self.calibrated else "px"

    @property
    def unit_label(self) -> str:
        """The length unit in words for people: "µm" or "px"."""
        return "µm" if self.calibrated else "px"

    @property
    def per_working_pixel(self) -> float:
        """Length of one working pixel in the table's unit (µm, or level-0 pixels)."""
        return float(self.mpp) if self.calibrated else float(self.downsample)

    @property
    def level0_mpp(self) -> float | None:
        return None if self.mpp is None else float(self.mpp) / float(self.downsample)

    def to_level0(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Working pixel-index coordinates (centre of pixel 0 at 0) → level-0 ``(y, x)`` (centre at 0.5)."""
        ox, oy = self.origin
        return oy + (np.asarray(y) + 0.5) * self.downsample, ox + (np.asarray(x) + 0.5) * self.downsample

    def to_working(self, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The inverse of :meth:`to_level0`: level-0 ``(y, x)`` → working pixel-index coordinates."""
        ox, oy = self.origin
        return (np.asarray(y) - oy) / self.downsample - 0.5, (np.asarray(x) - ox) / self.downsample - 0.5


def area_column(calibration: Calibration) -> str:
    return f"area_{calibration.length_unit}2"


def object_table(columns: dict[str, np.ndarray], calibration: Calibration, *,
                 class_names: list[str] | None = None, label_classes: dict[int, str] | None = None):
    """A pandas DataFrame of the objects, one row per label, in the documented column order.

    ``columns`` holds the block columns (:data:`~napari_autosam.measure.objects.GEOMETRY`,
    intensity and confidence columns, ``class_id``).  Class names come from
    ``label_classes`` (label → name) when given, else ``class_names[class_id - 1]``;
    objects without a class get an empty name.
    """
    import pandas as pd

    label = np.asarray(columns["label"], np.int64)
    unit, scale = calibration.length_unit, calibration.per_working_pixel
    table = {"object_id": label, "class": _class_names(label, columns.get("class_id"), class_names, label_classes)}
    cy, cx = calibration.to_level0(columns["centroid_y"], columns["centroid_x"])
    table["centroid_x_px"], table["centroid_y_px"] = cx, cy
    if calibration.calibrated:
        table["centroid_x_um"], table["centroid_y_um"] = cx * calibration.level0_mpp, cy * calibration.level0_mpp
    area = np.asarray(columns["area"], float)
    table[f"area_{unit}2"] = area * scale**2
    derived = {"equivalent_diameter": np.sqrt(4 * area / np.pi)}
    for name, source in _LENGTHS:
        table[f"{name}_{unit}"] = np.asarray(derived.get(source, columns.get(source)), float) * scale
    table["eccentricity"] = np.asarray(columns["eccentricity"], float)
    table["solidity"] = np.asarray(columns["solidity"], float)
    perimeter = np.asarray(columns["perimeter"], float)
    with np.errstate(divide="ignore", invalid="ignore"):
        table["circularity"] = np.where(perimeter > 0, np.minimum(4 * np.pi * area / perimeter**2, 1.0), 1.0)
    y0, x0 = calibration.to_level0(np.asarray(columns["bbox_y0"]) - 0.5, np.asarray(columns["bbox_x0"]) - 0.5)
    y1, x1 = calibration.to_level0(np.asarray(columns["bbox_y1"]) - 0.5, np.asarray(columns["bbox_x1"]) - 0.5)
    table.update({"bbox_x0_px": x0, "bbox_y0_px": y0, "bbox_x1_px": x1, "bbox_y1_px": y1})
    skip = {"label", "class_id", "area", "perimeter", "eccentricity", "solidity", "major_axis", "minor_axis",
            "centroid_y", "centroid_x", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"}
    table.update({name: np.asarray(values, float) for name, values in columns.items() if name not in skip})
    return pd.DataFrame(table)


def _class_names(label, class_id, class_names, label_classes) -> np.ndarray:
    names = np.full(len(label), "", dtype=object)
    if class_id is not None and class_names:
        ids = np.asarray(class_id, np.int64)
        for k, name in enumerate(class_names, start=1):
            names[ids == k] = name
    elif class_id is not None:
        ids = np.asarray(class_id, np.int64)
        names[ids > 0] = [f"Class {k}" for k in ids[ids > 0]]
    if label_classes:
        for i, value in enumerate(label):
            if int(value) in label_classes:
                names[i] = label_classes[int(value)] or ""
    return names
