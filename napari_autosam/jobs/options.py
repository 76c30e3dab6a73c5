"""The settings of segmenting files: one typed record for the command line, the Dask path and the Python API.

:class:`SegmentOptions` holds what ``napari-autosam segment`` takes as
options (besides the inputs, ``--out`` and the cluster options); its field
names are the command's option names (``--save-prob`` is ``save_prob``),
except ``--no-refine``, which is ``refine=False``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..inference.tiling import DEFAULT_OVERLAP  # light: no torch

__all__ = ["FORMATS", "MODES", "SegmentOptions"]

MODES = ("semantic", "instances")
FORMATS = ("auto", "tiff", "ome-zarr")


@dataclass(frozen=True)
class SegmentOptions:
    """How to segment a file and what to write (see ``napari-autosam segment --help`` for each option).

    Attributes
    ----------
    sam, model : str or None
        The SAM variant or checkpoint file, and a model checkpoint or model-store folder.
    mode : str
        ``"semantic"`` (masks) or ``"instances"`` (masks and instance labels).
    instance_source, refine : str, bool
        The mask the instance prompts come from (``"autosam"`` or ``"h"``); ask SAM for each object.
    device, precision : str or None
        Where SAM runs and its encoder's precision (``auto``, ``fp32``, ``bf16``).
    tile, overlap : int or None, int
        Tile planes larger than ``tile`` pixels (None: the automatic rule, 0: never); minimum overlap.
    channels, channel_axis, stack : the channels shown to SAM, the axis holding them, a 3D image as a Z stack
    cache_dir : str or None
        Keep SAM embeddings on disk here.
    batch_size : int or None
        Slices or tiles per batch.
    save_prob, format, preview, geojson : what is written
        Probability maps (TIFF only); ``"auto"``, ``"tiff"`` or ``"ome-zarr"``; h only, without SAM; QuPath GeoJSON.
    measure : bool
        Also measure the objects: ``<stem>_objects.csv``, ``<stem>_summary.csv``, ``<stem>_report.html``
        (:func:`napari_autosam.measure.measure_segmented`) and a summary line.
    tissue, sam_on, sam_share, sam_budget, sam_tiles : whole slides in two speeds (docs/slides.md):
        ``--tissue``, ``--sam-on``, the SAM share, the SAM pass's minutes and tile count
    mpp, level : float or None, int or None
        The working resolution of slides (at most one of them).
    """

    sam: str | None = None
    model: str | None = None
    mode: str = "semantic"
    instance_source: str = "autosam"
    refine: bool = True
    device: str | None = None
    precision: str | None = None
    tile: int | None = None
    overlap: int = DEFAULT_OVERLAP
    channels: list[int] | None = None
    channel_axis: int | None = None
    stack: bool = False
    cache_dir: str | None = None
    batch_size: int | None = None
    save_prob: bool = False
    format: str = "auto"
    preview: bool = False
    geojson: bool = False
    measure: bool = False
    mpp: float | None = None
    level: int | None = None
    tissue: str | None = None
    sam_on: str | None = None
    sam_share: float = 0.2
    sam_budget: float | None = None
    sam_tiles: int | None = None

    @classmethod
    def from_names(cls, **names) -> SegmentOptions:
        """The options given by the command's option names (``no_refine=True`` as ``--no-refine``).

        Raises
        ------
        TypeError
            For a name that is not an option of ``napari-autosam segment``.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(names) - known - {"no_refine"})
        if unknown:
            raise TypeError(f"not options of napari-autosam segment: {', '.join(unknown)}")
        if "no_refine" in names:
            names["refine"] = not names.pop("no_refine")
        return cls(**names)

    def check(self) -> None:
        """Raise ValueError (one line) for a tiling or a SAM pass that cannot be used."""
        if self.tile is not None and self.tile != 0 and not (self.tile >= 64 and 0 <= self.overlap < self.tile):
            raise ValueError(f"need --tile >= 64 and 0 <= --overlap < --tile, got {self.tile} and {self.overlap}")
        try:
            self.sam_plan()
        except ValueError as error:  # before any model is loaded, not per slide after it
            raise ValueError(f"--sam-on/--sam-share/--sam-budget/--sam-tiles: {error}") from None

    def sam_plan(self):
        """The two-speed path's SAM pass (:class:`~napari_autosam.inference.two_speed.SamPlan`) these options ask for."""
        from ..inference.two_speed import SamPlan

        return SamPlan(self.sam_on or "uncertain", share=self.sam_share,
                       seconds=None if self.sam_budget is None else 60.0 * self.sam_budget, tiles=self.sam_tiles)

    @property
    def resolution_request(self) -> dict:
        """The ``working_image`` keywords ``mpp``/``level`` ask for (``{}``: none)."""
        return {k: v for k, v in (("mpp", self.mpp), ("level", self.level)) if v is not None}


def quiet_run(task, unit: str = "step"):
    """Run a progress task to its result without showing anything (``unit`` names its steps for a display)."""
    from ..progress import run

    return run(task)
