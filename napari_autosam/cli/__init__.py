"""The ``napari-autosam`` command line: one sub-command per module in this package.

Each sub-command module (``<command>_command.py``) defines ``register(subparsers)``, which adds its
parser and sets ``func`` to a callable taking the parsed arguments and
returning an exit code.  Heavy imports (torch, napari) happen inside the
sub-commands, so ``napari-autosam --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__
from ..jobs.errors import DEBUG_ENV, OS_REASONS, CommandError, describe_os_error, error_message

__all__ = ["DEBUG_ENV", "CommandError", "build_parser", "check_output_folder", "describe_os_error", "error_message",
           "main"]

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS = ("info", "download", "segment", "train", "evaluate", "review", "geojson", "measure", "project",
            "demo")


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}" if minimum else
                                         f"must not be negative, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    return _whole_number(text, 1)


def channel_list(text: str) -> list[int]:
    """argparse type: comma-separated channel numbers like ``0,2,1``."""
    try:
        channels = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        channels = []
    if not channels or any(c < 0 for c in channels):
        raise argparse.ArgumentTypeError(f"expected comma-separated channel numbers >= 0 like 0,2,1, got {text!r}")
    return channels


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0."""
    return _whole_number(text, 0)


def open_sam(name: str, device, bar):
    """Load SAM for a sub-command, showing download progress on ``bar``; CommandError when it cannot."""
    from ..sam.download import DownloadError
    from ..sam.registry import SamCheckpointError, load_sam

    try:
        return bar.run(load_sam(name, device=device))
    except (DownloadError, SamCheckpointError) as exc:
        raise CommandError(f"{exc} (try --sam tiny for a test, or a local checkpoint file)") from exc


def check_output_folder(path, option: str = "--out", *, create: bool = True):
    """Check that ``path`` (a folder) can be written; CommandError otherwise.

    With ``create`` the folder is made now; without, only its nearest existing
    parent is checked, so a run whose every input fails leaves no empty folder
    behind (the outputs' writer makes it with the first file).
    """
    import tempfile
    from pathlib import Path

    path = Path(path).expanduser()
    for folder in (path, *path.parents):
        if folder.exists() and not folder.is_dir():
            what = "is a file" if folder == path else f"is inside {folder}, which is a file"
            raise CommandError(f"{option} {path} {what}; expected a folder")
    target = path if create else next(folder for folder in (path, *path.parents) if folder.exists())
    try:
        if create:
            path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as exc:
        raise CommandError(f"{option} {path} cannot be written: {OS_REASONS.get(exc.errno or -1) or exc}") from None
    return path


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command-line parser; ``only`` registers just that sub-command (its module alone is imported)."""
    parser = argparse.ArgumentParser(
        prog="napari-autosam",
        description="Automatic SAM segmentation with a learned prompt generator (AutoSAM).",
    )
    parser.add_argument("--version", action="version", version=f"napari-autosam {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in (only,) if only in COMMANDS else COMMANDS:
        importlib.import_module(f"{__name__}.{name}_command").register(subparsers)
    return parser


def _quiet_background_errors() -> None:
    """Keep asyncio's 'exception was never retrieved' dumps (zarr's reader tasks of a damaged file) off stderr.

    The error itself reaches the command as an exception and is reported in one line.
    """
    import logging

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    if os.environ.get(DEBUG_ENV, "").strip() in ("", "0"):
        _quiet_background_errors()
    words = sys.argv[1:] if argv is None else list(argv)
    # A run of one sub-command builds (and imports) that one only; anything else gets the whole parser.
    parser = build_parser(only=words[0] if words and words[0] in COMMANDS else None)
    args = parser.parse_args(words)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the one place errors become a line instead of a traceback
        if os.environ.get(DEBUG_ENV, "").strip() not in ("", "0"):
            raise
        print(f"napari-autosam {args.command}: error: {error_message(exc)}", file=sys.stderr)
        return 1


def entry() -> None:
    """The ``napari-autosam`` command: :func:`main`, then a quick exit.

    Once the command has returned, the interpreter's own shutdown (freeing
    every module and PyTorch's C++ state) takes 0.2-0.3 s with PyTorch
    loaded, a noticeable share of a short run.  So the streams are flushed,
    the ``atexit`` handlers run (temporary folders, logging, child
    processes, as at a normal exit) and the process ends at once; if another
    non-daemon thread is still alive, a profiler or debugger is attached,
    or ``NAPARI_AUTOSAM_DEBUG`` is set, it exits the normal way instead.
    """
    code = main()
    _exit(code)


def _exit(code: int) -> None:
    import atexit
    import signal
    import threading

    # The command is over: a Ctrl-C now would only break the clean-up (a traceback from an atexit handler
    # and its temporary folder left behind), so it is ignored while the process exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    others = [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    run_exit_functions = getattr(atexit, "_run_exitfuncs", None)
    watched = sys.gettrace() is not None or sys.getprofile() is not None  # a profiler or debugger writes at exit
    if others or watched or run_exit_functions is None or os.environ.get(DEBUG_ENV, "").strip() not in ("", "0"):
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: let the normal exit report it
        sys.exit(code)
    run_exit_functions()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
