"""Summaries per region and class: count, density per mm², % of the region's area, median size.

Regions are the whole image, the tissue (found on the image's thumbnail)
and each annotation of a QuPath GeoJSON file.  An object belongs to a region
when its centroid lies inside it.  No napari or Qt here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .table import Calibration, area_column


@dataclass
class Region:
    """A region in level-0 pixels: a shapely polygon, or a thumbnail mask (``step`` level-0 px per pixel)."""

    name: str
    geometry: object = None
    mask: np.ndarray | None = None
    step: float = 1.0

    def area_px(self) -> float:
        """The region's area in level-0 pixels²."""
        if self.geometry is not None:
            return float(self.geometry.area)
        return float(np.count_nonzero(self.mask)) * self.step**2

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Which level-0 points ``(x, y)`` are inside."""
        import shapely

        if self.geometry is not None:
            return shapely.contains_xy(self.geometry, np.asarray(x, float), np.asarray(y, float))
        rows = np.clip((np.asarray(y) / self.step).astype(np.int64), 0, self.mask.shape[0] - 1)
        cols = np.clip((np.asarray(x) / self.step).astype(np.int64), 0, self.mask.shape[1] - 1)
        return self.mask[rows, cols]


def whole_image(shape: tuple[int, int], calibration: Calibration) -> Region:
    """The labels' whole plane as a level-0 rectangle."""
    import shapely

    ox, oy = calibration.origin
    d = calibration.downsample
    return Region("image", geometry=shapely.box(ox, oy, ox + shape[1] * d, oy + shape[0] * d))


def tissue_mask(thumbnail: np.ndarray) -> np.ndarray | None:
    """Tissue on an RGB thumbnail: saturated or dark pixels (Otsu on saturation), holes filled.

    Pieces smaller than 1/2000 of the thumbnail (dust, pen specks) are dropped.

    Returns None for images that are not RGB (no tissue region then).
    """
    from scipy import ndimage
    from skimage.color import rgb2hsv
    from skimage.filters import threshold_otsu
    from skimage.morphology import remove_small_objects

    if thumbnail is None or thumbnail.ndim != 3 or thumbnail.shape[-1] < 3:
        return None
    hsv = rgb2hsv(thumbnail[..., :3])
    saturation, value = hsv[..., 1], hsv[..., 2]
    level = threshold_otsu(saturation) if np.ptp(saturation) > 0 else 1.0
    tissue = (saturation > max(level, 0.05)) | (value < 0.2)
    tissue = ndimage.binary_fill_holes(ndimage.binary_opening(tissue, iterations=1))
    return remove_small_objects(tissue, max_size=max(16, tissue.size // 2000))


def annotation_regions(path: str | os.PathLike) -> list[Region]:
    """One region per polygonal annotation of a QuPath GeoJSON file (all objects when none is an annotation)."""
    from ..io.geojson import read_features

    objects, _ = read_features(path)
    chosen = [o for o in objects if o.object_type == "annotation"] or list(objects)
    regions = []
    for i, obj in enumerate(chosen, start=1):
        name = obj.properties.get("name") or obj.class_name or f"annotation {i}"
        regions.append(Region(str(name), geometry=obj.geometry))
    return regions


def summarise(table, regions: list[Region], calibration: Calibration):
    """One row per region and class ("all" first, then each class present), as a pandas DataFrame.

    Columns: ``region``, ``class``, ``count``, ``region_area_mm2`` (or
    ``region_area_px2``), ``density_per_mm2`` (or ``density_per_mpx2``:
    per million level-0 px²), ``area_fraction_pct`` (objects' area / the
    region's, in %), ``median_area_um2`` (or ``_px2``).
    """
    import pandas as pd

    area_name = area_column(calibration)
    x, y = table["centroid_x_px"].to_numpy(), table["centroid_y_px"].to_numpy()
    mm2_per_px = None if calibration.level0_mpp is None else calibration.level0_mpp**2 / 1e6
    unit_per_px = calibration.level0_mpp**2 if calibration.calibrated else 1.0
    names = sorted(n for n in table["class"].unique() if n) if len(table) else []
    rows = []
    for region in regions:
        inside = region.contains(x, y) if len(table) else np.zeros(0, bool)
        area_px = region.area_px()
        for cls in ["all", *names]:
            chosen = inside if cls == "all" else inside & (table["class"].to_numpy() == cls)
            sizes = table[area_name].to_numpy()[chosen]
            row = {"region": region.name, "class": cls, "count": int(chosen.sum())}
            if mm2_per_px is not None:
                row["region_area_mm2"] = area_px * mm2_per_px
                row["density_per_mm2"] = row["count"] / row["region_area_mm2"] if area_px else np.nan
            else:
                row["region_area_px2"] = area_px
                row["density_per_mpx2"] = row["count"] / area_px * 1e6 if area_px else np.nan
            row["area_fraction_pct"] = 100 * sizes.sum() / (area_px * unit_per_px) if area_px else np.nan
            row[f"median_{area_name}"] = float(np.median(sizes)) if len(sizes) else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def summary_line(summary, calibration: Calibration) -> str:
    """``"1234 objects, 567.8 per mm² in 2.17 mm² (image)"``; px units said when uncalibrated."""
    row = summary.iloc[0]
    if calibration.calibrated:
        return (f"{int(row['count'])} objects, {row['density_per_mm2']:.1f} per mm² in "
                f"{row['region_area_mm2']:.3g} mm² ({row['region']})")
    return (f"{int(row['count'])} objects, {row['density_per_mpx2']:.1f} per million px² in "
            f"{row['region_area_px2']:.4g} px² ({row['region']}; no µm/px, sizes in px)")
