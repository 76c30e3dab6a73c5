"""A whole slide to OME-Zarr labels in two speeds, skipping the glass: the job the CLI and the widget run.

Outputs in ``folder`` (plane at the working resolution):

* ``<stem>_h.ome.zarr``: h(g(I)) on every tissue tile, complete after the fast pass;
* ``<stem>_autosam.ome.zarr``: the best labels so far — AutoSAM on the tiles the SAM
  pass reached, h(g(I)) on the others; its ``autosam`` metadata counts both;
* ``<stem>_tiles.csv``: one row per tile — its core in level-0 pixels, tissue share,
  what it got (``sam``, ``h`` or ``skipped``) and h's unsure share.

Both label images are created empty at their final paths before the fast pass
(a viewer can show them filling in); glass tiles are never written.  No napari or Qt here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..io.labels_zarr import labels_path
from ..progress import CancelToken, Task
from .ondisk import create_role_labels
from .two_speed import LabelImageSink, SamPlan, TwoSpeedResult, two_speed

__all__ = ["SlideRun", "choose_tissue", "segment_slide", "slide_labels_task", "write_tile_table"]


@dataclass
class SlideRun:
    """What :func:`segment_slide` did: the tissue used, the two-speed result and the files written."""

    tissue: object
    result: TwoSpeedResult
    paths: dict[str, Path]
    table: Path


def choose_tissue(slide, choice: str | os.PathLike = "auto"):
    """The TissueMask for ``--tissue``: "auto" (detect), "off" (everything) or a mask image / GeoJSON file."""
    from ..io.tissue import read_tissue_file, slide_tissue, whole_tissue

    if str(choice) == "off":
        return whole_tissue(slide.shape[:2])
    if str(choice) == "auto":
        return slide_tissue(slide)
    return read_tissue_file(choice, slide.shape[:2])


def write_tile_table(path: str | os.PathLike, result: TwoSpeedResult, downsample: float = 1.0) -> Path:
    """``<stem>_tiles.csv``: per tile ``x,y,width,height`` of its core in level-0 pixels, tissue, source, uncertainty."""
    from ..io.atomic import atomic_write_text

    lines = ["tile,x,y,width,height,tissue,source,uncertainty"]
    for r in result.tiles:
        y0, y1, x0, x1 = (v * downsample for v in r.core)
        unsure = "" if r.uncertainty is None else f"{r.uncertainty:.4f}"
        lines.append(f"{r.index},{x0:g},{y0:g},{x1 - x0:g},{y1 - y0:g},{r.tissue:.4f},{r.source},{unsure}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


def segment_slide(segmenter, image, folder: str | os.PathLike, stem: str, *, tissue=None, downsample: float = 1.0,
                  tile: int | None = 1024, overlap: int = 128, plan: SamPlan | None = None, placement=None,
                  attributes: dict | None = None, channels=None, cancel: CancelToken | None = None,
                  on_labels=None) -> Task[SlideRun]:
    """Segment a slide's working-resolution plane ``image`` in two speeds into ``folder`` (see the module docstring).

    Parameters
    ----------
    image : the plane at the working resolution (lazy; only tissue tiles are read)
    tissue, downsample : a TissueMask over level 0, level-0 pixels per working pixel
    placement, attributes : as for :meth:`~napari_autosam.io.labels_zarr.LabelImage.create`
    on_labels : called with ``{role: LabelImage}`` once they exist (a viewer can open them then)
    Other keywords as for :func:`~napari_autosam.inference.two_speed.two_speed`.
    """
    from .inputs import image_layout

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shape = image_layout(image, None, stack=False).plane_shape
    facts = {**(attributes or {}), "tissue": getattr(tissue, "kind", "off")}
    images = {role: create_role_labels(labels_path(folder, stem, role), role, shape, placement, facts)
              for role in ("h", "autosam")}
    if on_labels is not None:
        on_labels(images)
    result = yield from two_speed(segmenter, image, LabelImageSink(images), tissue=tissue, downsample=downsample,
                                  tile=tile, overlap=overlap, plan=plan, channels=channels, cancel=cancel)
    counts = {source: result.count(source) for source in ("sam", "h", "skipped")}
    images["autosam"].set_attributes(tiles=counts, stopped=result.stopped, tissue_fraction=result.tissue_fraction)
    images["h"].set_attributes(tiles={"h": counts["h"] + counts["sam"], "skipped": counts["skipped"]})
    table = write_tile_table(folder / f"{stem}_tiles.csv", result, downsample)
    return SlideRun(tissue, result, {role: image.path for role, image in images.items()}, table)


def slide_labels_task(segmenter, image, folder: str | os.PathLike, stem: str, *, slide=None, tissue=None,
                      downsample: float = 1.0, tile: int | None = 1024, overlap: int = 128,
                      plan: SamPlan | None = None, placement=None, attributes: dict | None = None, channels=None,
                      cancel: CancelToken | None = None):
    """:func:`segment_slide` as a viewer runs it: the tissue found first when none is given, an OnDiskResult back.

    ``slide``: the :class:`~napari_autosam.io.slides.Slide` whose tissue is detected when ``tissue`` is None
    (a mask the user edited wins); neither: every tile is tissue.  The label images exist at
    :func:`~napari_autosam.io.labels_zarr.labels_path` from the first tile on, so a viewer can show them
    filling in.  Returns an :class:`~napari_autosam.inference.ondisk.OnDiskResult` whose ``messages`` say
    the tissue share and which tiles got SAM, h only, or nothing (glass).
    """
    from ..io.tissue import slide_tissue
    from ..progress import single_step
    from .ondisk import OnDiskResult

    if tissue is None and slide is not None:
        tissue = yield from single_step("tissue", "finding the tissue", lambda: slide_tissue(slide))
    run = yield from segment_slide(segmenter, image, folder, stem, tissue=tissue, downsample=downsample, tile=tile,
                                   overlap=overlap, plan=plan, placement=placement, attributes=attributes,
                                   channels=channels, cancel=cancel)
    result = run.result
    messages = [f"Tissue {result.tissue_fraction:.0%} of the image; h(g(I)) on {result.count('h') + result.count('sam')}"
                f" tissue tiles, SAM on the {result.count('sam')} where h was least sure, "
                f"{result.count('skipped')} glass pieces skipped (per tile: {run.table.name})."]
    return OnDiskResult(dict(run.paths), None, [], result.normalization,
                        foreground=result.foreground, cancelled=result.cancelled,
                        untrained=segmenter.untrained, messages=messages + list(result.messages))
