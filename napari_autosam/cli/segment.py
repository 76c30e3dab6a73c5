"""``napari-autosam segment``: automatic masks (and instances) for image files.

For each input ``DIR/<stem>_autosam.tif`` (SAM prompted by g, uint8 0/1) and
``DIR/<stem>_h.tif`` (the surrogate h(g(I)), uint8 0/1) are written, plus
``DIR/<stem>_instances.tif`` (int32 labels) with ``--mode instances``.
``DIR`` is ``--out`` for inputs in one folder; inputs from several folders
keep their folders below their common parent (see :mod:`.batch`).  A file
that fails is one line on stderr, the others are still segmented, and a
summary line ends the run (exit status 1 when some failed).
TIFFs are read lazily; planes larger than ``--tile`` (by default: larger
than 2048 pixels on a side, with 1024-pixel tiles) are segmented tile by
tile into a scratch zarr store beside the outputs and written out as tiled
TIFFs without ever being loaded whole.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ..inference.tiling import AUTO_TILE, AUTO_TILE_ABOVE, DEFAULT_OVERLAP, auto_tile  # the one tiling rule
from .precision import add_precision_argument, apply_precision


def _channels(text: str) -> list[int]:
    try:
        return [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(f"expected comma-separated channel numbers like 0,2,1, got {text!r}") from None


def register(subparsers) -> None:
    from . import non_negative_int, positive_int

    parser = subparsers.add_parser(
        "segment",
        help="segment images automatically (AutoSAM masks, h(g(I)), optional instances)",
        description="Segment images with a frozen SAM prompted by the prompt generator g. Writes "
        "<stem>_autosam.tif and <stem>_h.tif (uint8 0/1 masks), and <stem>_instances.tif "
        "(int32 labels) with --mode instances.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files (TIFF/OME-TIFF, PNG, JPEG, BMP) or whole slides "
                        "(SVS, NDPI, MRXS, SCN, BIF, VMS, SVSLIDE, OME-Zarr folders)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output directory (created if missing); inputs from several folders keep their "
                        "folders below their common parent")
    parser.add_argument("--model", metavar="PATH", help="a trained g/h checkpoint (.safetensors) or a model-store "
                        "folder (its active version); default: the untrained prompt generator")
    parser.add_argument("--sam", default=None, metavar="NAME|PATH",
                        help="SAM variant (vit_b, vit_l, vit_h, tiny) or checkpoint file (default: the one the "
                        "--model was trained for, else vit_b)")
    parser.add_argument("--mode", choices=("semantic", "instances"), default="semantic",
                        help="semantic: masks only; instances: also self-prompted instance labels")
    parser.add_argument("--instance-source", choices=("autosam", "h"), default="autosam",
                        help="the mask the instance prompts come from (default: the AutoSAM mask)")
    parser.add_argument("--no-refine", action="store_true",
                        help="instances: keep the split auxiliary objects instead of asking SAM for each "
                        "(no decoder call per object: much faster on a CPU)")
    parser.add_argument("--device", default=None, help="cuda, mps, cpu or auto (default: auto)")
    add_precision_argument(parser)
    parser.add_argument("--tile", type=non_negative_int, default=None, metavar="N",
                        help=f"tile planes larger than N pixels (default: {AUTO_TILE} for planes over "
                        f"{AUTO_TILE_ABOVE} pixels, else no tiling; 0: never tile)")
    parser.add_argument("--overlap", type=non_negative_int, default=DEFAULT_OVERLAP, metavar="N",
                        help=f"minimum tile overlap in pixels (default {DEFAULT_OVERLAP})")
    parser.add_argument("--channels", type=_channels, default=None, metavar="C[,C[,C]]",
                        help="channels shown to SAM: one as gray, or up to three as R,G,B")
    parser.add_argument("--channel-axis", type=int, default=None, metavar="AXIS", help="axis holding the channels")
    parser.add_argument("--stack", action="store_true", help="treat a 3D image as a Z stack even with <= 4 slices")
    parser.add_argument("--cache-dir", default=None, metavar="DIR",
                        help="keep SAM embeddings on disk here, so re-segmenting skips the encoder")
    parser.add_argument("--batch-size", type=positive_int, default=None, metavar="N", help="slices or tiles per batch")
    parser.add_argument("--save-prob", action="store_true", help="also write float32 probability maps (TIFF only)")
    parser.add_argument("--format", choices=("auto", "tiff", "ome-zarr"), default="auto",
                        help="tiff: <stem>_autosam.tif …; ome-zarr: <stem>_autosam.ome.zarr … (multiscale OME-Zarr "
                        "labels, written tile by tile); auto (default): OME-Zarr for planes over 4096² pixels")
    parser.add_argument("--preview", action="store_true",
                        help="h(g(I)) only, without SAM: tens of times faster on a CPU; writes <stem>_h only "
                        "(and instances split from it with --mode instances), no AutoSAM mask")
    parser.add_argument("--geojson", action="store_true",
                        help="also write the objects as QuPath GeoJSON: <stem>_instances.geojson (instances) or "
                        "<stem>_autosam.geojson (regions of the mask), in level-0 pixels")
    from .resolution import add_resolution_args

    add_resolution_args(parser, what="slides")
    from ..distributed.options import add_dask_args

    add_dask_args(parser)
    parser.set_defaults(func=_run)


def _load_model(args, sam):
    if args.model is None:
        print("note: no --model given: using the untrained default prompt generator (hardnet_small, fixed seed); "
              "its masks are only a starting point. Train one with `napari-autosam train` or in napari.",
              file=sys.stderr)
        return None
    from ..models.checkpoint import load_checkpoint
    from ..models.store import resolve_model_path
    from ..sam.registry import check_sam_variant

    model = load_checkpoint(resolve_model_path(args.model))
    check_sam_variant(model.sam_variant, sam, str(args.model))
    return model


def _load_sam(args):
    from ..models.store import sam_for_model
    from ..sam.download import DownloadError
    from ..sam.registry import SamCheckpointError, load_sam
    from . import CommandError
    from .progressbar import ProgressBar

    try:
        name = sam_for_model(args.sam, args.model)
        return ProgressBar(unit="B", unit_scale=True).run(load_sam(name, device=args.device))
    except (DownloadError, SamCheckpointError) as exc:
        raise CommandError(f"{exc} (try --sam tiny for a test, or a local checkpoint file)") from exc


def _run(args) -> int:
    from ..distributed.options import run_segment, wants_dask

    if wants_dask(args):  # the same per-file step on the workers of a dask cluster
        return run_segment(args)
    from ..inference import InstanceOptions, Segmenter
    from ..sam.cache import EmbeddingCache

    if args.tile is not None and args.tile != 0 and not (args.tile >= 64 and 0 <= args.overlap < args.tile):
        raise ValueError(f"need --tile >= 64 and 0 <= --overlap < --tile, got {args.tile} and {args.overlap}")
    from . import check_output_folder
    from .batch import plan_jobs, run_jobs

    jobs = plan_jobs(args.inputs, Path(args.out).expanduser(), _output_stem)  # name clashes: refused before any work
    check_output_folder(args.out, create=False)
    if args.cache_dir:
        check_output_folder(args.cache_dir, "--cache-dir")
    sam = _load_sam(args)
    apply_precision(sam, args)
    model = _load_model(args, sam)
    cache = EmbeddingCache(sam, args.cache_dir) if args.cache_dir else None
    options = InstanceOptions(source=args.instance_source, refine=not args.no_refine)
    segmenter = Segmenter(sam, model, cache=cache, batch_size=args.batch_size, instance_options=options)
    return run_jobs("segment", jobs, lambda job: _segment_file(segmenter, job.path, job.out_dir, args))


def _output_stem(path: Path) -> str:
    """The stem a file's outputs are named by (as :func:`_segment_file` names them)."""
    from ..io.images import image_stem
    from ..io.slides import is_slide_path, slide_stem

    return slide_stem(path) if is_slide_path(path) else image_stem(path)


def _segment_file(segmenter, path: Path, out: Path, args) -> None:
    from ..inference.inputs import image_layout
    from ..io.images import image_stem
    from ..io.slides import slide_stem
    from ..jobs.preflight import check_options_fit, nothing_left_on_failure
    from .resolution import open_input, say

    image, resolution, note = open_input(path, args, segmenter.checkpoint.metadata.get("resolution"))
    say(note)
    layout = image_layout(image, args.channel_axis, stack=True if args.stack else None)
    check_options_fit(args, layout, path)  # before the work, not after it
    tile = args.tile
    if tile is None:
        tile = auto_tile(layout.plane_shape)
    stem = image_stem(path) if resolution is None else slide_stem(path)
    out.mkdir(parents=True, exist_ok=True)
    with nothing_left_on_failure(out, stem):  # a file that fails leaves no outputs
        _segment_opened(segmenter, image, layout, path, out, stem, tile, args, resolution)


def _segment_opened(segmenter, image, layout, path: Path, out: Path, stem: str, tile, args, resolution) -> None:
    from .progressbar import ProgressBar

    if _output_format(args, layout) == "ome-zarr":
        if getattr(segmenter.checkpoint, "class_heads", None) is not None:
            print(f"note: {path.name}: class labels are written with TIFF outputs only (--format tiff)", file=sys.stderr)
        return _segment_to_ome_zarr(segmenter, image, layout, path, out, stem, tile, args, resolution)
    scratch = out / f".{stem}.autosam-scratch"
    try:
        task = segmenter.segment(image, channel_axis=args.channel_axis, channels=args.channels, mode=args.mode,
                                 tile=tile or None, overlap=args.overlap, store=scratch, stack=layout.is_stack,
                                 preview=args.preview)
        result = ProgressBar(unit="tile" if tile else "image").run(task)
        written = _write_outputs(result, out, stem, args.save_prob)
        from .classes_cli import write_class_outputs  # a class model: <stem>_classes.tif (+ instance classes)

        written += write_class_outputs(segmenter, image, layout, result, out, stem, tile, args, resolution)
        if args.geojson:
            from .geojson import write_result_geojson

            written.append(write_result_geojson(result, out, stem, resolution=resolution))
        _report(path, layout, result, written, resolution)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _output_format(args, layout) -> str:
    from ..io.labels_zarr import labels_on_disk

    chosen = getattr(args, "format", "auto")
    if chosen == "auto":
        chosen = "ome-zarr" if labels_on_disk(layout.plane_shape) else "tiff"
    if chosen == "ome-zarr" and args.save_prob:
        raise ValueError("--save-prob writes TIFF probability maps; add --format tiff to get them")
    return chosen


def _segment_to_ome_zarr(segmenter, image, layout, path: Path, out: Path, stem: str, tile, args,
                         resolution=None) -> None:
    """Masks (and instances) as OME-Zarr label images, written tile by tile; nothing left on failure."""
    from ..inference.ondisk import segment_to_labels
    from ..io.labels_zarr import placement_for
    from ..slide_regions import resolution_facts
    from .progressbar import ProgressBar

    attributes = {"source": str(path)}
    if resolution is not None:
        attributes["resolution"] = resolution_facts(resolution)
    task = segment_to_labels(segmenter, image, out, stem, channel_axis=args.channel_axis, channels=args.channels,
                             mode=args.mode, tile=tile or None, overlap=args.overlap, stack=layout.is_stack,
                             placement=placement_for(resolution), attributes=attributes, preview=args.preview)
    result = ProgressBar(unit="tile" if tile else "image").run(task)
    if args.geojson:
        from .geojson import write_labels_geojson

        write_labels_geojson(result.paths, out, stem, resolution)
    print(ondisk_report(path, layout.output_shape, result, resolution, args.preview))


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
    outputs = {"autosam": result.autosam_mask, "h": result.h_mask, "instances": result.instances}
    if save_prob:
        outputs.update({"autosam_prob": result.autosam_prob, "h_prob": result.h_prob})
    return [write_array(out / f"{stem}_{name}.tif", array) for name, array in outputs.items() if array is not None]


def write_array(path: Path, array, *, tile: int = 512) -> Path:
    """Write a numpy array with :func:`write_tiff`, or a zarr array as a tiled TIFF, one tile at a time."""
    import numpy as np

    from ..io.images import write_tiff

    if isinstance(array, np.ndarray):
        return write_tiff(path, array)
    import tifffile

    from ..io.atomic import atomic_path

    def tiles():
        planes = [()] if array.ndim == 2 else [(z,) for z in range(array.shape[0])]
        for z in planes:
            for y in range(0, array.shape[-2], tile):
                for x in range(0, array.shape[-1], tile):
                    yield np.asarray(array[(*z, slice(y, y + tile), slice(x, x + tile))])

    nbytes = int(np.prod(array.shape)) * np.dtype(array.dtype).itemsize
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, tiles(), shape=array.shape, dtype=array.dtype, tile=(tile, tile),
                         compression="zlib", photometric="minisblack", bigtiff=nbytes > 2**31)
    return path


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


def _report(path: Path, layout, result, written: list[Path], resolution=None) -> None:
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
    print("; ".join(parts) + " → " + ", ".join(p.name for p in written))
