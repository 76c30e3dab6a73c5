"""Errors a user can fix, and the one line every front end shows for an error instead of a traceback.

The command line (:mod:`napari_autosam.cli`), the Dask path and the job layer
share these, so none of them needs to import another to word an error.
"""

from __future__ import annotations

import errno

__all__ = ["DEBUG_ENV", "OS_REASONS", "CommandError", "describe_os_error", "error_message"]


class CommandError(Exception):
    """An error the user can fix; printed as one line without a traceback."""


#: Set to 1 to see the traceback of an unexpected error instead of its one-line summary.
DEBUG_ENV = "NAPARI_AUTOSAM_DEBUG"

OS_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOENT: "no such file or folder",
    errno.EEXIST: "it already exists",
}


def describe_os_error(exc: OSError) -> str:
    """One line for a file-system error: the path and the reason in plain words."""
    reason = OS_REASONS.get(exc.errno or -1) or exc.strerror
    if not reason or exc.filename is None:
        return str(exc) or type(exc).__name__
    where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else str(exc.filename)
    return f"{where}: {reason}"


def error_message(exc: BaseException) -> str:
    """The one line shown for an error raised by a sub-command (no traceback)."""
    from ..io.images import ImageReadError
    from ..sam.download import DownloadError

    if isinstance(exc, (CommandError, ImageReadError, DownloadError, ValueError)):
        return str(exc) or type(exc).__name__
    if isinstance(exc, OSError):
        return str(exc) if exc.errno is None else describe_os_error(exc)
    if isinstance(exc, MemoryError):
        return "ran out of memory (try a smaller --tile or --batch-size)"
    return (f"unexpected {type(exc).__name__}: {exc} (this is a bug in napari-autosam; "
            f"run again with {DEBUG_ENV}=1 to see where it happened)")
