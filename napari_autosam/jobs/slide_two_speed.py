"""Whole slides in two speeds for ``segment``: tissue, h(g(I)) on every tissue tile, then SAM where it matters.

The engine is :mod:`napari_autosam.inference.slide_job`; here the options decide when it applies and
the report line is made.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: Share of the tissue tiles SAM runs on with ``--sam-on uncertain`` unless told.
DEFAULT_SAM_SHARE = 0.2


def two_speed_applies(options, segmenter, layout, resolution) -> bool:
    """Slides go the two-speed way when asked (``--tissue``/``--sam-on``) or when their labels go to OME-Zarr.

    Not for stacks, instances, previews, probability maps, TIFF outputs or class models (they keep the
    one-pass path).
    """
    if resolution is None or layout.is_stack or options.mode != "semantic" or options.preview or options.save_prob:
        return False
    if getattr(segmenter.checkpoint, "class_heads", None) is not None or segmenter.model.surrogate is None:
        return False
    if getattr(options, "tissue", None) is not None or getattr(options, "sam_on", None) is not None:
        return getattr(options, "format", "auto") != "tiff"
    from ..io.labels_zarr import labels_on_disk

    chosen = getattr(options, "format", "auto")
    return chosen == "ome-zarr" or (chosen == "auto" and labels_on_disk(layout.plane_shape))


def segment_two_speed(segmenter, image, path: Path, out: Path, stem: str, tile, options, resolution,
                      run_task) -> None:
    """Tissue, h everywhere, SAM where it matters; one report line with the tissue share and the tile counts."""
    from ..inference.slide_job import choose_tissue, segment_slide
    from ..io.labels_zarr import placement_for
    from ..io.slides import open_slide
    from ..io.tissue import TissueFileError
    from ..io.working import describe
    from ..slide_regions import resolution_facts

    slide = open_slide(path)
    try:
        tissue = choose_tissue(slide, options.tissue or "auto")
    except TissueFileError as error:
        raise ValueError(f"--tissue {error}") from error
    finally:
        slide.close()
    plan = options.sam_plan()
    attributes = {"source": str(path), "resolution": resolution_facts(resolution)}
    task = segment_slide(segmenter, image, out, stem, tissue=tissue, downsample=resolution.downsample,
                         tile=tile or 1024, overlap=options.overlap, plan=plan, placement=placement_for(resolution),
                         attributes=attributes, channels=options.channels)
    done = run_task(task, "tile")
    result = done.result
    if options.geojson:
        from .geojson_outputs import tile_source, write_labels_geojson

        write_labels_geojson({"autosam": done.paths["autosam"]}, out, stem, resolution,
                             describe=tile_source(result.source_at, resolution.downsample))  # SAM's objects or h's
    shape = "×".join(str(s) for s in image.shape[:2])
    parts = [f"{path.name}: {shape} at {describe(resolution)}",
             f"tissue {tissue.fraction:.1%} ({tissue.kind})", f"AutoSAM {result.foreground:.1%} foreground",
             f"h on {result.count('h') + result.count('sam')} tiles, SAM on {result.count('sam')}, "
             f"{result.count('skipped')} glass pieces skipped",
             f"h {result.h_seconds:.0f} s, SAM {result.sam_seconds:.0f} s"]
    parts += result.messages + (["cancelled"] if result.cancelled else [])
    names = [p.name for p in done.paths.values()] + [done.table.name]
    print("; ".join(parts) + " → " + ", ".join(names))
    if result.cancelled:
        print(f"note: {path.name}: cancelled; the labels hold what was done", file=sys.stderr)
