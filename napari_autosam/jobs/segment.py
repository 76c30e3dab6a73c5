"""Segmenting one input file to its outputs: the step ``napari-autosam segment``, the Dask workers and the
Python API share.

For an input ``DIR/<stem>_autosam.tif`` (SAM prompted by g, uint8 0/1) and
``DIR/<stem>_h.tif`` (the surrogate h(g(I)), uint8 0/1) are written, plus
``DIR/<stem>_instances.tif`` (int32 labels) in instance mode, probability
maps with ``save_prob``, GeoJSON with ``geojson`` and a class model's label
image (:mod:`.class_outputs`).  Planes over 4096² pixels (or
``format="ome-zarr"``) go to multiscale OME-Zarr label images instead,
written tile by tile.  TIFFs are read lazily; planes larger than the tile
(:func:`~napari_autosam.inference.tiling.auto_tile`) are segmented tile by
tile into a scratch zarr store beside the outputs and written out as tiled
TIFFs without ever being loaded whole.

Each file prints its report line on stdout and its notes (``note: …``) on
stderr, as the command line shows them; the Dask path captures both.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ..inference.tiling import auto_tile  # the one tiling rule (light: no torch)
from .options import SegmentOptions, quiet_run

__all__ = ["labels_task", "make_segmenter", "ondisk_report", "output_format", "output_stem", "segment_file"]


def output_stem(path: Path) -> str:
    """The stem a file's outputs are named by (as :func:`segment_file` names them)."""
    from ..io.images import image_stem
    from ..io.slides import is_slide_path, slide_stem

    return slide_stem(path) if is_slide_path(path) else image_stem(path)


def output_format(options: SegmentOptions, layout) -> str:
    """``"tiff"`` or ``"ome-zarr"``: the format of an input's outputs (``auto``: OME-Zarr for planes over 4096²)."""
    from ..io.labels_zarr import labels_on_disk

    chosen = options.format
    if chosen == "auto":
        chosen = "ome-zarr" if labels_on_disk(layout.plane_shape) else "tiff"
    if chosen == "ome-zarr" and options.save_prob:
        raise ValueError("--save-prob writes TIFF probability maps; add --format tiff to get them")
    return chosen


def make_segmenter(sam, checkpoint, options: SegmentOptions, kind=None):
    """A :class:`~napari_autosam.inference.Segmenter` (or subclass ``kind``) set up as ``options`` say."""
    from ..device import set_precision
    from ..inference import InstanceOptions, Segmenter
    from ..sam.cache import EmbeddingCache

    if options.precision is not None:  # here, so that the dask workers' SAMs get it too, not only the CLI's
        set_precision(sam, options.precision)
    cache = EmbeddingCache(sam, options.cache_dir) if options.cache_dir else None
    instances = InstanceOptions(source=options.instance_source, refine=options.refine)
    return (kind or Segmenter)(sam, checkpoint, cache=cache, batch_size=options.batch_size, instance_options=instances)


def open_for_segmenting(path: Path, options: SegmentOptions, segmenter=None):
    """``(image, layout, resolution, note)`` of an input, read at the resolution ``options`` ask for.

    The model's recorded resolution (of ``segmenter``'s checkpoint) is the default.
    """
    from ..inference.inputs import image_layout
    from .reading import open_input

    recorded = segmenter.checkpoint.metadata.get("resolution") if segmenter is not None else None
    image, resolution, note = open_input(Path(path), options.resolution_request, recorded)
    return image, image_layout(image, options.channel_axis, stack=True if options.stack else None), resolution, note


def segment_file(segmenter, path: Path, out: Path, options: SegmentOptions, *, run_task=None) -> None:
    """Segment the file at ``path`` into the folder ``out`` (see the module docstring).

    ``run_task(task, unit)`` runs each long step (a progress-event generator)
    to its result, e.g. with a progress bar whose steps are ``unit``
    (``"tile"``, ``"image"``, ``"window"``); default: without a display.

    Raises
    ------
    ValueError
        An input or option that cannot be used (one line).
    """
    from ..io.images import image_stem
    from ..io.slides import slide_stem
    from .preflight import check_options_fit, nothing_left_on_failure
    from .reading import say

    run_task = run_task or quiet_run
    image, layout, resolution, note = open_for_segmenting(path, options, segmenter)
    say(note)
    check_options_fit(options, layout, path)  # before the work, not after it
    tile = options.tile
    if tile is None:
        tile = auto_tile(layout.plane_shape)
    stem = image_stem(path) if resolution is None else slide_stem(path)
    out.mkdir(parents=True, exist_ok=True)
    with nothing_left_on_failure(out, stem):  # a file that fails leaves no outputs
        _segment_opened(segmenter, image, layout, path, out, stem, tile, options, resolution, run_task)


def _segment_opened(segmenter, image, layout, path: Path, out: Path, stem: str, tile, options, resolution,
                    run_task) -> None:
    from .slide_two_speed import segment_two_speed, two_speed_applies

    if two_speed_applies(options, segmenter, layout, resolution):  # whole slides: skip the glass, h first, then SAM
        return segment_two_speed(segmenter, image, path, out, stem, tile, options, resolution, run_task)
    if output_format(options, layout) == "ome-zarr":
        if getattr(segmenter.checkpoint, "class_heads", None) is not None:
            print(f"note: {path.name}: class labels are written with TIFF outputs only (--format tiff)", file=sys.stderr)
        return _segment_to_ome_zarr(segmenter, image, layout, path, out, stem, tile, options, resolution, run_task)
    scratch = out / f".{stem}.autosam-scratch"
    try:
        task = segmenter.segment(image, channel_axis=options.channel_axis, channels=options.channels,
                                 mode=options.mode, tile=tile or None, overlap=options.overlap, store=scratch,
                                 stack=layout.is_stack, preview=options.preview)
        result = run_task(task, "tile" if tile else "image")
        written = _write_outputs(result, out, stem, options.save_prob)
        from .class_outputs import write_class_outputs  # a class model: <stem>_classes.tif (+ instance classes)

        written += write_class_outputs(segmenter, image, layout, result, out, stem, tile, options, resolution,
                                       run_task=run_task)
        if options.geojson:
            from .geojson_outputs import write_result_geojson

            written.append(write_result_geojson(result, out, stem, resolution=resolution))
        print(_report(path, layout, result, written, resolution))
        if options.measure:
            from .measure_step import measure_written

            print(f"{path.name}: {measure_written(written, image, layout, out, stem, resolution, run_task)}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _segment_to_ome_zarr(segmenter, image, layout, path: Path, out: Path, stem: str, tile, options, resolution,
                         run_task) -> None:
    """Masks (and instances) as OME-Zarr label images, written tile by tile; nothing left on failure."""
    task = labels_task(segmenter, image, out, stem, source=str(path), resolution=resolution,
                       channel_axis=options.channel_axis, channels=options.channels, mode=options.mode,
                       tile=tile or None, overlap=options.overlap, stack=layout.is_stack, preview=options.preview)
    result = run_task(task, "tile" if tile else "image")
    if options.geojson:
        from .geojson_outputs import write_labels_geojson

        write_labels_geojson(result.paths, out, stem, resolution)
    print(ondisk_report(path, layout.output_shape, result, resolution, options.preview))
    if options.measure:
        from .measure_step import measure_written

        written = list(result.paths.values())
        print(f"{path.name}: {measure_written(written, image, layout, out, stem, resolution, run_task)}")


def labels_task(segmenter, image, out: Path, stem: str, *, source: str, resolution=None, placement=None,
                extra: dict | None = None, **kwargs):
    """The task that segments ``image`` into OME-Zarr label images ``out/<stem>_<role>.ome.zarr``, tile by tile.

    The labels record their ``source`` and, for a slide, the working
    ``resolution`` (an :class:`~napari_autosam.io.working.Resolution`), then
    the ``extra`` facts (e.g. the model).  ``placement``: where a label pixel
    sits (default: from the resolution).  ``**kwargs`` go to
    :func:`~napari_autosam.inference.ondisk.segment_to_labels` (``tile``,
    ``overlap``, ``mode``, ``region``, ``cancel``, …).  The command line's
    ``segment`` and the widget's big images both write through here.
    """
    from ..inference.ondisk import segment_to_labels
    from ..io.labels_zarr import placement_for
    from ..slide_regions import resolution_facts

    attributes = {"source": source}
    if resolution is not None:
        attributes["resolution"] = resolution_facts(resolution)
    attributes.update(extra or {})
    placement = placement_for(resolution) if placement is None else placement
    return segment_to_labels(segmenter, image, out, stem, placement=placement, attributes=attributes, **kwargs)


def ondisk_report(path: Path, shape, result, resolution=None, preview: bool = False) -> str:
    """The report line of an OME-Zarr result (an :class:`~napari_autosam.inference.ondisk.OnDiskResult`)."""
    from ..io.working import describe

    shape = "×".join(str(s) for s in shape)
    where = f" at {describe(resolution)}" if resolution is not None else ""
    what = "h" if preview else "AutoSAM"
    parts = [f"{path.name}: {shape}{where}", f"{what} {result.foreground:.1%} foreground"
             + (" (preview: h only)" if preview else "")]
    if result.agreement:
        parts.append(f"agreement (Dice) {sum(result.agreement) / len(result.agreement):.3f}")
    parts += result.messages + (["cancelled"] if result.cancelled else [])
    return "; ".join(parts) + " → " + ", ".join(p.name for p in result.paths.values())


def _write_outputs(result, out: Path, stem: str, save_prob: bool) -> list[Path]:
    from ..io.images import write_array

    outputs = {"autosam": result.autosam_mask, "h": result.h_mask, "instances": result.instances}
    if save_prob:
        outputs.update({"autosam_prob": result.autosam_prob, "h_prob": result.h_prob})
    return [write_array(out / f"{stem}_{name}.tif", array) for name, array in outputs.items() if array is not None]


def _blockwise(array):
    """The array in memory-sized pieces (numpy arrays come whole)."""
    import numpy as np

    from ..inference.tiling import blocks

    if isinstance(array, np.ndarray):
        yield array
        return
    planes = [()] if array.ndim == 2 else [(z,) for z in range(array.shape[0])]
    for z in planes:
        for window in blocks(array.shape[-2:]):
            yield np.asarray(array[(*z, *window)])


def _report(path: Path, layout, result, written: list[Path], resolution=None) -> str:
    """The report line of a TIFF result: shape, resolution, foreground, agreement, instances, files."""
    import numpy as np

    from ..io.working import describe

    def fraction(mask) -> float:
        return sum(int(np.count_nonzero(b)) for b in _blockwise(mask)) / float(np.prod(mask.shape))

    shape = "×".join(str(s) for s in layout.output_shape)
    where = f" at {describe(resolution)}" if resolution is not None else ""
    parts = [f"{path.name}: {shape}{where}"]
    if result.autosam_mask is not None:
        parts.append(f"AutoSAM {fraction(result.autosam_mask):.1%} foreground")
    if result.h_mask is not None:
        parts.append(f"h {fraction(result.h_mask):.1%}" + (" foreground (preview: h only)" if result.preview else ""))
    if result.agreement:
        mean = float(np.mean(result.agreement))
        parts.append(f"agreement (Dice) {mean:.3f}" + (" mean over slices" if len(result.agreement) > 1 else ""))
    if result.instances is not None:
        parts.append(f"{max(int(b.max()) for b in _blockwise(result.instances))} instances")
    parts += result.messages
    if result.cancelled:
        parts.append("cancelled")
    return "; ".join(parts) + " → " + ", ".join(p.name for p in written)
