"""``napari-autosam segment``: automatic masks (and instances) for image files.

The options become a :class:`~napari_autosam.jobs.options.SegmentOptions`
and each file goes through the job layer's
:func:`~napari_autosam.jobs.segment.segment_file` (its docstring lists the
outputs).  ``DIR`` is ``--out`` for inputs in one folder; inputs from several
folders keep their folders below their common parent (see
:mod:`napari_autosam.jobs.batch`).  A file that fails is one line on stderr,
the others are still segmented, and a summary line ends the run (exit status
1 when some failed).  With ``--dask-scheduler``/``--dask-workers`` the files
are spread over a cluster (:mod:`napari_autosam.distributed`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..inference.tiling import AUTO_TILE, AUTO_TILE_ABOVE, DEFAULT_OVERLAP  # the one tiling rule
from ..jobs.options import SegmentOptions
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
    parser.add_argument("--project", metavar="DIR",
                        help="instead of --out: a slide project; each slide is added to it and its labels kept there "
                        "(docs/projects.md)")
    parser.add_argument("--out", metavar="DIR",
                        help="output directory (created if missing); inputs from several folders keep their "
                        "folders below their common parent")
    parser.add_argument("--model", metavar="PATH", help="a trained g/h checkpoint (.safetensors) or a model-store "
                        "folder (its active version); default: the untrained prompt generator")
    parser.add_argument("--sam", default=None, metavar="NAME|PATH",
                        help="SAM name (vit_b, vit_l, vit_h, a domain SAM such as vit_b_histopathology: see `download --help`; "
                        "tiny) or checkpoint file (default: the one the "
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
    _add_output_args(parser)
    from .slide_args import add_slide_args

    add_slide_args(parser)
    from .resolution import add_resolution_args

    add_resolution_args(parser, what="slides")
    from ..distributed.cluster import add_dask_args

    add_dask_args(parser)
    parser.set_defaults(func=_run)


def _add_output_args(parser) -> None:
    """What ``segment`` writes beside the masks: probabilities, the format, GeoJSON, measurements."""
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
    parser.add_argument("--measure", action="store_true",
                        help="also measure every object: <stem>_objects.csv, <stem>_summary.csv and <stem>_report.html "
                        "(areas in µm² when the µm/px is known; docs/measurements.md) and a summary line")


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


def segment_options(args) -> SegmentOptions:
    """The job layer's options from the parsed command line."""
    return SegmentOptions(
        sam=args.sam, model=args.model, mode=args.mode, instance_source=args.instance_source,
        refine=not args.no_refine, device=args.device, precision=getattr(args, "precision", None), tile=args.tile,
        overlap=args.overlap, channels=args.channels, channel_axis=args.channel_axis, stack=args.stack,
        cache_dir=args.cache_dir, batch_size=args.batch_size, save_prob=args.save_prob, format=args.format,
        preview=args.preview, geojson=args.geojson, mpp=args.mpp, level=args.level, measure=args.measure,
        tissue=args.tissue, sam_on=args.sam_on, sam_share=args.sam_share, sam_budget=args.sam_budget,
        sam_tiles=args.sam_tiles)


def run_with_bar(task, unit: str):
    """Run a job's step with a progress bar on stderr counting ``unit``s."""
    from .progressbar import ProgressBar

    return ProgressBar(unit=unit).run(task)


def _run(args) -> int:
    from ..distributed.cluster import wants_dask

    if wants_dask(args) and args.project:
        raise ValueError("--project segments in this process; leave out --dask-scheduler/--dask-workers")
    if args.project:
        args.format = "ome-zarr"  # a project keeps each slide's labels as OME-Zarr
    options = segment_options(args)
    if wants_dask(args):  # the same per-file step on the workers of a dask cluster
        return run_on_cluster(args.inputs, args.out, options, scheduler=args.dask_scheduler, workers=args.dask_workers)
    options.check()
    from ..jobs.batch import Job, plan_jobs, run_jobs
    from ..jobs.segment import make_segmenter, output_stem, segment_file
    from . import check_output_folder

    project, slide_of = None, {}
    if args.project:  # each slide's labels into its folder of the project (docs/projects.md)
        from .project_command import project_inputs

        project, planned = project_inputs(args.project, args.inputs)
        jobs = [Job(path, folder, output_stem(path)) for path, folder, _ in planned]
        slide_of = {str(path): slide for path, _, slide in planned}
    elif args.out is None:
        raise ValueError("--out DIR is needed (or --project DIR)")
    else:
        jobs = plan_jobs(args.inputs, Path(args.out).expanduser(), output_stem)  # name clashes: refused first
        check_output_folder(args.out, create=False)
    if args.cache_dir:
        check_output_folder(args.cache_dir, "--cache-dir")
    sam = _load_sam(args)
    apply_precision(sam, args)
    segmenter = make_segmenter(sam, _load_model(args, sam), options)

    def work(job) -> None:
        segment_file(segmenter, job.path, job.out_dir, options, run_task=run_with_bar)
        if project is not None:
            project.note_labels(slide_of[str(job.path)])

    return run_jobs("segment", jobs, work)


def run_on_cluster(inputs, out, options: SegmentOptions, *, scheduler: str | None = None,
                   workers: int | None = None) -> int:
    """``napari-autosam segment`` on a cluster: same files, one progress bar over the images.

    ``scheduler``/``workers`` as ``--dask-scheduler``/``--dask-workers``.
    """
    from ..distributed.cluster import connect, dashboard_line
    from ..jobs.batch import run_jobs
    from . import check_output_folder
    from .progressbar import ProgressBar

    options.check()
    check_output_folder(out, create=False)
    if options.cache_dir:
        check_output_folder(options.cache_dir, "--cache-dir")
    with connect(scheduler, workers) as client:
        from ..distributed.dask_segment import segment_many

        n = len(client.scheduler_info()["workers"])
        print(f"dask: {n} worker{'s' if n != 1 else ''} at {client.scheduler.address}; {dashboard_line(client)}",
              file=sys.stderr)
        if options.model is None:
            print("note: no --model given: using the untrained default prompt generator (hardnet_small, fixed "
                  "seed); its masks are only a starting point.", file=sys.stderr)
        task = segment_many(inputs, out, client=client, sam=options.sam, model=options.model, options=options)
        result = ProgressBar(unit="step").run(task)  # an image, or a tile of a spread slide

    def replay(job):  # the command line's own failure lines and summary, in input order
        if str(job.path) in result.errors:
            raise result.errors[str(job.path)]
        for note in result.notes.get(str(job.path), ()):
            print(note, file=sys.stderr)
        print(result.reports[str(job.path)])

    return run_jobs("segment", result.jobs, replay)
