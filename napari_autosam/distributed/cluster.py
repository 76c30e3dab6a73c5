"""``--dask-scheduler`` / ``--dask-workers`` for ``napari-autosam segment``; dask is imported only when one is given.

The command's cluster run itself is :func:`napari_autosam.cli.segment_command.run_on_cluster`.
"""

from __future__ import annotations

import contextlib

__all__ = ["add_dask_args", "connect", "dashboard_line", "wants_dask"]

MISSING = ("--dask-scheduler/--dask-workers need dask.distributed, an optional extra: "
           "pip install 'napari-autosam[distributed]'")


def add_dask_args(parser) -> None:
    """Add the mutually exclusive cluster options to the ``segment`` parser."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--dask-scheduler", default=None, metavar="ADDRESS",
                       help="spread the images over the workers of a running dask.distributed scheduler "
                       "(e.g. tcp://10.0.0.5:8786); inputs and --out must be on a file system the workers share")
    group.add_argument("--dask-workers", type=int, default=None, metavar="N",
                       help="spread the images over N worker processes on this machine (a dask LocalCluster)")


def wants_dask(args) -> bool:
    """True when the command line asks for a cluster."""
    return bool(getattr(args, "dask_scheduler", None) or getattr(args, "dask_workers", None))


@contextlib.contextmanager
def connect(scheduler: str | None = None, workers: int | None = None, *, host: str = "127.0.0.1",
            timeout: str = "30s"):
    """A ``distributed.Client`` of the scheduler at ``scheduler``, or of a new LocalCluster of ``workers`` processes.

    The LocalCluster has one thread per worker (torch runs its own threads)
    and listens on ``host`` only; it is closed on leaving the block.
    """
    from ..jobs.errors import CommandError

    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise CommandError(MISSING) from None
    if scheduler:
        try:
            client = Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError, ValueError) as exc:
            raise CommandError(f"--dask-scheduler {scheduler}: no dask scheduler answered there within {timeout} "
                               f"({type(exc).__name__}); expected an address like tcp://HOST:8786") from None
        with client:
            yield client
        return
    if workers is None or workers < 1:
        raise CommandError(f"--dask-workers: expected a number of workers >= 1, got {workers}")
    import tempfile

    import dask

    from ..io.atomic import remove_scratch, scratch_folder

    scratch = scratch_folder(tempfile.gettempdir(), "napari-autosam-dask-")  # dask's own would stay in the temp folder
    try:
        with _worker_environ(), dask.config.set({"temporary-directory": str(scratch)}), LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host=host,
                                             dashboard_address=f"{host}:0", local_directory=str(scratch)) as cluster, \
                Client(cluster) as client:
            yield client
    finally:
        remove_scratch(scratch)


def _worker_environ():
    """dask's worker environment without its ``MALLOC_TRIM_THRESHOLD_``, for the LocalCluster's nannies.

    dask sets it (65536) in every worker it spawns to return freed memory to
    the system; torch on a CPU then pays page faults on every large tensor:
    a 16-tile segmentation took 39-42 s instead of 24-27 s in one process
    with the variable set (docs/scale-out.md).  Without it glibc's own
    adaptive thresholds apply, as in a plain ``napari-autosam segment``.
    """
    import dask

    key = "distributed.nanny.pre-spawn-environ"
    environ = {k: v for k, v in (dask.config.get(key, default=None) or {}).items() if k != "MALLOC_TRIM_THRESHOLD_"}
    return dask.config.set({key: environ})


def dashboard_line(client) -> str:
    """Where the cluster's dashboard is (or why there is none), in one line."""
    try:
        import bokeh  # noqa: F401  the dashboard needs it
    except ImportError:
        return "dashboard: not available (pip install bokeh for it)"
    return f"dashboard: {client.dashboard_link}"
