"""From masks to numbers: per-object measurements, region summaries, tables and a slide report.

The engine of ``napari-autosam measure``, ``segment --measure`` and the
widget's measurement table (no napari or Qt here)::

    from napari_autosam.measure import measure_files, write_outputs
    from napari_autosam.progress import run

    result = run(measure_files("slide_instances.ome.zarr", "slide.svs", regions="tumour.geojson"))
    result.table      # one row per object (pandas)
    result.summary    # one row per region and class

Columns and their computation: docs/measurements.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..progress import Task, run
from .inputs import MeasureInputError, Opened, open_inputs
from .objects import GEOMETRY
from .regions import Region, annotation_regions, summarise, summary_line, tissue_mask, whole_image
from .table import Calibration, object_table
from .tiled import DEFAULT_TILE, Sources, measure_tiled

__all__ = ["Calibration", "MeasureInputError", "Measurement", "Sources", "measure", "measure_files",
           "labels_to_measure", "measure_labels", "measure_outputs", "measure_segmented",
           "measure_sources", "write_outputs"]


@dataclass
class Measurement:
    """The result of measuring one label image.

    Attributes
    ----------
    table : one row per object (columns in docs/measurements.md)
    summary : one row per region and class
    calibration : µm/px and level-0 placement of the labels
    shape : ``(H, W)`` of the labels
    thumbnails : ``"labels"`` and ``"image"`` every ``step``-th pixel, for the report
    sources : what was measured (the labels measured: a class mask's components)
    notes : what the user should know (a class mask measured at a lower level, an image left out)
    """

    table: object
    summary: object
    calibration: Calibration
    shape: tuple[int, int]
    thumbnails: dict = field(default_factory=dict)
    step: int = 1
    name: str = ""
    sources: Sources | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def summary_text(self) -> str:
        """One line: objects and density (per mm², or per million px² with px units said)."""
        return summary_line(self.summary, self.calibration)


def measure(opened: Opened, *, regions: str | os.PathLike | None = None, tile: int = DEFAULT_TILE,
            workers: int = 1, tissue: bool = True) -> Task[Measurement]:
    """Measure opened sources window by window and summarise them per region; a generator of progress.

    Regions: the whole image, the tissue (RGB images, when ``tissue``) and
    each annotation of the GeoJSON file ``regions``.
    """
    region_list = annotation_regions(regions) if regions is not None else []
    result = yield from measure_tiled(opened.sources, tile=tile, workers=workers)
    calibration = opened.calibration
    columns = result.columns or {name: np.zeros(0) for name in GEOMETRY}
    table = object_table(columns, calibration, class_names=opened.class_names, label_classes=opened.label_classes)
    shape = opened.sources.shape
    found = [whole_image(shape, calibration)]
    mask = tissue_mask(result.thumbnails.get("image")) if tissue else None
    if mask is not None and mask.any():
        found.append(Region("tissue", mask=mask, step=result.step * calibration.downsample))
    summary = summarise(table, found + region_list, calibration)
    return Measurement(table, summary, calibration, shape, result.thumbnails, result.step, opened.name,
                       opened.sources, list(opened.notes))


def measure_files(labels, image=None, *, regions=None, tile: int = DEFAULT_TILE, workers: int = 1,
                  **open_options) -> Task[Measurement]:
    """Open files (see :func:`~napari_autosam.measure.inputs.open_inputs`) and :func:`measure` them."""
    opened = open_inputs(labels, image, **open_options)
    return (yield from measure(opened, regions=regions, tile=tile, workers=workers))


def measure_sources(labels, image=None, *, mpp: float | None = None, downsample: float = 1.0, stain: str = "auto",
                    probability=None, classes=None, class_names=None, label_classes: dict[int, str] | None = None,
                    tile: int = DEFAULT_TILE, workers: int = 1) -> Task[Measurement]:
    """Measure arrays (numpy or lazy, ``labels`` ``Y×X``, ``image`` ``Y×X`` or ``Y×X×C``); a generator of progress.

    ``mpp``: µm per pixel of the labels; ``downsample``: level-0 pixels per label pixel.
    """
    from .intensity import stain_for

    shape = tuple(labels.shape)
    if image is not None and tuple(image.shape[:2]) != shape:
        raise MeasureInputError(f"the labels are {shape[0]}×{shape[1]} but the image is "
                                f"{'×'.join(str(s) for s in image.shape)}")
    mode = stain_for(tuple(image.shape), image.dtype, stain) if image is not None else "channels"
    sources = Sources(labels, image, mode, probability, None, classes)
    opened = Opened(sources, Calibration(mpp, downsample), dict(label_classes or {}), class_names)
    return (yield from measure(opened, tile=tile, workers=workers))


def measure_labels(labels, image=None, **options) -> Measurement:
    """:func:`measure_sources` run at once (tests, scripts, small images)."""
    return run(measure_sources(np.asarray(labels) if not hasattr(labels, "shape") else labels, image, **options))


def write_outputs(result: Measurement, folder: str | os.PathLike, stem: str) -> list[Path]:
    """``<stem>_objects.csv`` (+ .parquet with pyarrow), ``<stem>_summary.csv``, ``<stem>_report.html``."""
    from .outputs import write_table
    from .report import write_report

    folder = Path(folder)
    written = write_table(result.table, folder / f"{stem}_objects.csv")
    written += write_table(result.summary, folder / f"{stem}_summary.csv", parquet=False)
    written.append(Path(write_report(folder / f"{stem}_report.html", title=f"{stem}: measurements",
                                     table=result.table, summary=result.summary, calibration=result.calibration,
                                     shape=result.shape, thumbnails=result.thumbnails,
                                     summary_text=result.summary_text)))
    return written


def measure_outputs(labels, image, folder: str | os.PathLike, stem: str, *, regions=None, workers: int = 1,
                    **open_options) -> Task[tuple[list[Path], str]]:
    """What ``segment --measure`` does after writing the labels: measure them, write the three outputs.

    Returns the paths written and the one-line summary.
    """
    result = yield from measure_files(labels, image, regions=regions, workers=workers, **open_options)
    return write_outputs(result, folder, stem), "; ".join([result.summary_text, *result.notes])


def labels_to_measure(written) -> Path | None:
    """Of the files ``segment`` wrote for one input, the labels to measure: the instances, else the AutoSAM mask
    (else h's mask, all a preview writes)."""
    paths = [Path(p) for p in written]
    for role in ("_instances", "_autosam", "_h"):
        found = [p for p in paths if p.name.split(".")[0].endswith(role)]
        if found:
            return found[0]
    return None


def measure_segmented(written, image, folder: str | os.PathLike, stem: str, *, mpp: float | None = None,
                      downsample: float | None = None, workers: int = 1) -> Task[tuple[list[Path], str]]:
    """``segment --measure`` for one input: measure the labels it wrote (see :func:`labels_to_measure`).

    ``image``: the input file, or the working image array ``segment`` read
    (a slide at ``--mpp``/``--level``), whose ``mpp`` and ``downsample`` then
    place the labels.  Returns the paths written and the one-line summary.
    """
    labels = labels_to_measure(written)
    if labels is None:
        raise MeasureInputError(f"{stem}: no instance labels or mask was written to measure")
    return (yield from measure_outputs(labels, image, folder, stem, workers=workers, mpp=mpp,
                                       downsample=downsample))
