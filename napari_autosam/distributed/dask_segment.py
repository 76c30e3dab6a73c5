"""Segment many images on the workers of a ``dask.distributed`` cluster.

:func:`segment_many` sends one task per input path (paths, not pixels: the
workers read the inputs and write the outputs on a file system they share
with the client).  Each worker loads SAM and the model once, through a
:class:`ModelPlugin` registered on the client under a name made of the SAM
and the model file; every task then runs the job layer's per-file step
(:func:`napari_autosam.jobs.segment.segment_file`, the one
``napari-autosam segment`` runs), so the files are the ones it writes in one
process, byte for byte.

Re-running a task is safe: outputs are written atomically, a task first
removes the scratch store a killed run of the same image left behind, and
the client removes left-over temporary files once every task has finished.
When a worker dies, the scheduler runs its tasks again on another one.

A slide whose labels go to OME-Zarr in more than one tile is not one task:
its first task only plans it (:func:`.tile_tasks.plan_slide`), and its tiles
are then spread over the workers in groups (:mod:`.dask_tiles`), straight
into the shared label images, with the single process's outputs.
"""

from __future__ import annotations

import contextlib
import glob
import io
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from distributed import WorkerPlugin, as_completed, get_worker

from ..jobs.options import SegmentOptions
from ..progress import Stopwatch, Task

__all__ = ["BatchResult", "ModelPlugin", "segment_many", "segment_options"]

#: One task at a time writes its report line and notes into captured stdout/stderr.
_CAPTURE = threading.Lock()


@dataclass
class BatchResult:
    """What :func:`segment_many` did.

    Attributes
    ----------
    written : dict[str, list[Path]]
        Output files per input path, in input order.
    errors : dict[str, Exception]
        The exception of each input that could not be segmented.
    jobs : list[napari_autosam.jobs.batch.Job]
        Every input with its output folder and stem, as the command line plans them.
    reports : dict[str, str]
        The command line's report line per segmented input.
    workers : dict[str, str]
        The worker address that segmented each input.
    notes : dict[str, list[str]]
        The command's ``note:`` lines per input (e.g. a resolution other than the model's).
    tiles : dict[str, dict[str, int]]
        For each slide whose tiles were spread over the workers: tiles segmented per worker address.
    """

    written: dict[str, list[Path]] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)
    reports: dict[str, str] = field(default_factory=dict)
    workers: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    tiles: dict[str, dict[str, int]] = field(default_factory=dict)
    jobs: list = field(default_factory=list)

    @property
    def failed(self) -> dict[str, str]:
        """One line per input that could not be segmented."""
        from ..jobs.batch import failure_line

        return {p: failure_line("segment", Path(p), exc) for p, exc in self.errors.items()}


def segment_options(out=None, **options) -> SegmentOptions:
    """The ``segment`` command's settings: its defaults and ``options`` by option name.

    ``segment_options(out, mode="instances", tile=512)`` means
    ``napari-autosam segment … --out out --mode instances --tile 512``
    (``out`` is where :func:`segment_many` writes; it is not an option of a file's segmentation).

    Raises
    ------
    TypeError
        For a name that is not an option of ``napari-autosam segment``.
    """
    return SegmentOptions.from_names(**options)


class ModelPlugin(WorkerPlugin):
    """Loads SAM and the model once per worker process, on the first task that needs them.

    Parameters
    ----------
    sam : str
        A SAM variant name or checkpoint file (as ``--sam`` takes it).
    model : str or None
        A model checkpoint file (resolved on the client, so every worker uses
        the same version), or None for the untrained default.
    device : str or None
        ``cuda``, ``mps``, ``cpu`` or None (automatic, per worker).
    """

    def __init__(self, sam: str, model: str | None, device: str | None = None) -> None:
        self.sam, self.model, self.device = str(sam), model, device
        self.name = f"napari-autosam:{self.sam}:{model or 'untrained'}:{device or 'auto'}"
        self.loads = 0
        self._loaded = None
        self._lock = threading.Lock()

    def setup(self, worker=None) -> None:
        self._lock = threading.Lock()  # a fresh lock on each worker (the plugin arrives pickled)

    def __getstate__(self):
        return {"sam": self.sam, "model": self.model, "device": self.device, "name": self.name}

    def __setstate__(self, state):
        self.__dict__.update(state, loads=0, _loaded=None, _lock=threading.Lock())

    def loaded(self):
        """``(sam, checkpoint)``, loaded on the first call in this worker process."""
        with self._lock:
            if self._loaded is None:
                from ..inference import default_model
                from ..models.checkpoint import load_checkpoint
                from ..progress import run
                from ..sam.registry import check_sam_variant, load_sam

                sam = run(load_sam(self.sam, device=self.device))
                checkpoint = default_model() if self.model is None else load_checkpoint(self.model)
                check_sam_variant(checkpoint.sam_variant, sam, str(self.model))
                self._loaded, self.loads = (sam, checkpoint), self.loads + 1
            return self._loaded

    def segmenter(self, options: SegmentOptions, kind=None):
        """A :class:`~napari_autosam.inference.Segmenter` (or subclass ``kind``) set up as ``options`` say."""
        from ..jobs.segment import make_segmenter

        sam, checkpoint = self.loaded()
        return make_segmenter(sam, checkpoint, options, kind)


def _remove_leftovers(out: Path, stem: str) -> None:
    """Remove what a killed run may have left in ``out`` for ``stem``: its scratch store, temporary files and folders.

    Called once no task of the batch runs any more, so every temporary file
    of these outputs is a dead writer's, on whichever machine it ran.
    """
    shutil.rmtree(out / f".{stem}.autosam-scratch", ignore_errors=True)
    if not out.is_dir():
        return
    for pattern in (f".{glob.escape(stem)}_*.part*", f".{glob.escape(stem)}_*.incomplete",
                    f".{glob.escape(stem)}_*.old"):
        for part in out.glob(pattern):
            with contextlib.suppress(OSError):
                part.unlink() if part.is_file() else shutil.rmtree(part)


def _segment_path(path: str, out: str, stem: str, options: SegmentOptions, plugin_name: str, spread: bool = False):
    """The task run on a worker: segment one file (or, with ``spread``, plan a big one's tiles).

    Returns the names of the files written, the report line, the notes (the
    command's ``note:`` lines; its progress lines are dropped, the client
    draws the bar) and the worker's address; or a :class:`.tile_tasks.SlidePlan`
    when ``spread`` and the file's labels go to OME-Zarr in several tiles.
    """
    from ..jobs.segment import segment_file

    worker = get_worker()
    segmenter = worker.plugins[plugin_name].segmenter(options)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / f".{stem}.autosam-scratch", ignore_errors=True)  # a killed run's store: start clean
    if spread:
        from .tile_tasks import plan_slide

        plan = plan_slide(segmenter, Path(path), out, stem, options)
        if plan is not None:
            return plan
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with _CAPTURE:
        text, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(text), contextlib.redirect_stderr(err):
            segment_file(segmenter, Path(path), out, options)
    notes = [line for line in err.getvalue().splitlines() if line.startswith("note:")]
    written = sorted(p.name for p in out.iterdir()
                     if p.name.startswith(f"{stem}_") and before.get(p.name) != p.stat().st_mtime_ns)
    return written, text.getvalue().strip(), notes, worker.address


def _has_plugin(name: str, dask_worker=None) -> bool:
    return name in dask_worker.plugins


def register_models(client, sam: str, model: str | None, device: str | None = None) -> str:
    """Register a :class:`ModelPlugin` on ``client`` unless every worker has it already; return its name."""
    plugin = ModelPlugin(sam, model, device)
    present = client.run(_has_plugin, plugin.name)
    if not present or not all(present.values()):
        client.register_plugin(plugin, name=plugin.name)
    return plugin.name


def segment_many(paths, out, *, client, sam: str | None = None, model: str | None = None, spread_tiles: bool = True,
                 tiles_per_task: int | None = None, region_levels: int | None = None,
                 options: SegmentOptions | None = None, **names) -> Task[BatchResult]:
    """Segment ``paths`` on the workers of ``client``; yield one progress event per image (or tile) done.

    Parameters
    ----------
    paths : inputs as ``napari-autosam segment`` takes them, readable at the same path on every worker
    out : the output folder, shared by the client and the workers
    client : a ``distributed.Client`` of a running cluster
    sam, model : as ``--sam`` and ``--model`` (a model-store folder's active version is resolved once here)
    spread_tiles : spread the tiles of each slide whose labels go to OME-Zarr (over 4096² px, or
        ``format="ome-zarr"``) over the workers (default); False: one task per input whatever its size
    tiles_per_task, region_levels : tiles per task and the pyramid levels each output-region task writes
        (defaults: :func:`.dask_tiles.tiles_per_task`, :data:`.dask_tiles.REGION_LEVELS`)
    options : the other ``segment`` settings (a SegmentOptions; default: the command's defaults)
    **names : ``segment`` options by name (``mode``, ``tile``, ``save_prob``, ``no_refine``, …) over ``options``

    Returns
    -------
    BatchResult
        Files written, reports and failures per input (keyed by the path as
        given).  A file that fails (unreadable, wrong shape) is kept in
        ``errors``; the others go on.  Progress counts one step per input,
        and for a spread slide one per tile plus one for its closing step
        (the total grows when such a slide is planned).

    Raises
    ------
    napari_autosam.jobs.errors.CommandError
        Two inputs that would write the same output names (before any work).
    """
    from dataclasses import asdict

    from ..jobs.batch import plan_jobs
    from ..jobs.segment import output_stem
    from ..models.store import resolve_model_path, sam_for_model
    from .dask_tiles import REGION_LEVELS

    out = Path(out).expanduser().resolve()
    jobs = plan_jobs(paths, out, output_stem)  # output folders and names as the command line plans them
    model_path = str(resolve_model_path(model).resolve()) if model is not None else None
    given = asdict(options) if options is not None else {}
    options = segment_options(out, **{**given, **names, "sam": sam, "model": model_path})
    plugin = register_models(client, sam_for_model(sam, model_path), model_path, options.device)
    clock = Stopwatch(len(jobs))
    futures = {client.submit(_segment_path, str(job.path.resolve()), str(job.out_dir), job.stem, options, plugin,
                             spread_tiles, key=f"autosam-segment-{i}-{job.path.name}", pure=False): job
               for i, job in enumerate(jobs)}
    yield clock.event("segment", 0, f"{len(jobs)} images on {len(client.scheduler_info()['workers'])} workers")
    result = BatchResult(jobs=jobs)
    levels = REGION_LEVELS if region_levels is None else region_levels
    try:
        yield from _gather(client, futures, result, clock, options, plugin, tiles_per_task, levels)
    finally:
        for job in jobs:
            _remove_leftovers(job.out_dir, job.stem)
    result.written = {str(j.path): result.written[str(j.path)] for j in jobs if str(j.path) in result.written}
    return result


def _gather(client, futures: dict, result: BatchResult, clock, options, plugin: str, per_task, levels: int):
    """Take in every finished task (files, then a spread slide's tiles) into ``result``; one event per unit done."""
    from .dask_tiles import SlideRun

    done, slides = 0, {}  # slides: future of a tile task -> its SlideRun
    queue = as_completed(futures)
    try:
        for future in queue:
            if future in slides:
                units, message = _slide_step(slides.pop(future), future, slides, queue, result)
            else:
                job = futures.pop(future)
                plan = _take_file(job, future, result)
                if plan is not None:  # a big slide: its tiles go out to the workers
                    slide = SlideRun(client, job, plan, options, plugin, f"autosam-tiles-{len(slides)}-{job.path.name}",
                                     per_task=per_task, levels=levels)
                    _add(slide, slide.start(), slides, queue)
                    clock.total += plan.n_tiles
                    yield clock.event("segment", done, f"{job.path.name}: {plan.n_tiles} tiles in "
                                      f"{len(slide.groups)} tasks")
                    continue
                units, message = 1, f"{job.path.name} done"
            done += units
            if units:
                yield clock.event("segment", done, message)
    finally:
        client.cancel(list(futures) + list(slides))


def _take_file(job, future, result: BatchResult):
    """Record a file task's outcome in ``result``; return its :class:`.tile_tasks.SlidePlan` when it planned tiles."""
    from .tile_tasks import SlidePlan

    key = str(job.path)
    try:
        value = future.result()
    except Exception as exc:  # noqa: BLE001  one bad file does not stop the others
        result.errors[key] = exc
        return None
    future.release()  # taken: a worker lost later must not make the scheduler run it again
    if isinstance(value, SlidePlan):
        return value
    names, report, notes, worker = value
    result.written[key] = [job.out_dir / n for n in names]
    result.reports[key], result.workers[key], result.notes[key] = report, worker, notes
    return None


def _add(slide, new, slides: dict, queue) -> None:
    for future in new:
        slides[future] = slide
        queue.add(future)


def _slide_step(slide, future, slides: dict, queue, result: BatchResult) -> tuple[int, str]:
    """Take in one finished task of a spread slide; return the progress units it completes and a message."""
    job = slide.job
    key = str(job.path)
    if slide.failed:
        return 0, ""
    try:
        new, units = slide.done(future)
    except Exception as exc:  # noqa: BLE001  the slide fails, the other inputs go on
        result.errors[key] = exc  # its other tasks are cancelled; they come back here and count nothing
        return slide.fail(), f"{job.path.name} failed"
    _add(slide, new, slides, queue)
    tiles = sum(slide.tile_workers.values())
    if slide.names is None:
        return units, f"{job.path.name}: {tiles}/{slide.plan.n_tiles} tiles"
    result.written[key] = [job.out_dir / n for n in slide.names]
    result.reports[key], result.notes[key] = slide.report(), list(slide.plan.notes)
    result.workers[key] = ", ".join(sorted(slide.tile_workers))
    result.tiles[key] = dict(slide.tile_workers)
    return units, f"{job.path.name} done"
