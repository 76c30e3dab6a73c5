"""Write files so that a crash never leaves a half-written file in place."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

#: A temporary file whose name records no owner counts as abandoned after this many idle seconds.
STALE_AFTER = 600.0


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None, *, owned: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; move it onto ``target`` on success.

    The temporary file lives in the target's directory so the final
    ``os.replace`` is atomic on the same file system.  If the block raises,
    the temporary file is removed and ``target`` is left untouched.
    ``owned`` puts this process's id into the temporary name, so that
    :func:`remove_stale_parts` can tell a dead writer's file from a live one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = target.suffix if suffix is None else suffix
    prefix = f".{target.name}.pid{os.getpid()}-" if owned else f".{target.name}."
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=f".part{suffix}", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes the file private (0600); give it the permissions a plain open() would
    mode = 0o666 & ~_umask()
    os.chmod(tmp, mode)
    try:
        yield tmp
        os.chmod(tmp, mode)  # again: some writers (safetensors) replace the file with a private one
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the target path."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(target)


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically and return the target path."""
    return atomic_write_bytes(target, text.encode("utf-8"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_parts(target: str | os.PathLike, *, stale_after: float = STALE_AFTER) -> list[Path]:
    """Delete the temporary files of ``target`` left by writers that died; return them.

    A temporary file named with its owner's process id (``owned=True``) is
    stale when that process is gone; one without an id when it has not
    changed for ``stale_after`` seconds.
    """
    target = Path(target)
    return _remove_stale(target.parent, f".{glob_escape(target.name)}.*.part*", stale_after)


def remove_stale_parts_in(folder: str | os.PathLike, *, stale_after: float = STALE_AFTER) -> list[Path]:
    """:func:`remove_stale_parts` for every target in ``folder``."""
    return _remove_stale(Path(folder), ".*.part*", stale_after)


def _remove_stale(folder: Path, pattern: str, stale_after: float) -> list[Path]:
    if not folder.is_dir():
        return []
    owner = re.compile(r"\.pid(\d+)-[^.]*\.part")
    removed = []
    for part in folder.glob(pattern):
        match = owner.search(part.name)
        try:
            stale = (not _alive(int(match.group(1))) if match
                     else time.time() - part.stat().st_mtime > stale_after)
            if stale:
                part.unlink()
                removed.append(part)
        except FileNotFoundError:  # its writer finished or cleaned it meanwhile
            continue
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters quoted."""
    return re.sub(r"([*?\[])", r"[\1]", name)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a new, empty temporary folder beside ``target``; it becomes ``target`` on success.

    For outputs that are folders (OME-Zarr): everything is written under a
    hidden ``.<name>.pid<id>-<random>.incomplete`` name and renamed at the
    end, replacing an existing ``target`` folder.  If the block raises, the
    temporary folder is removed and ``target`` is left as it was; folders of
    writers that died (their process is gone) are removed on the next write.
    """
    import shutil

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for left in target.parent.glob(f".{glob_escape(target.name)}.pid*-*.incomplete"):
        match = re.search(r"\.pid(\d+)-[^.]*\.incomplete$", left.name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(left, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.pid{os.getpid()}-", suffix=".incomplete", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_directory(tmp, target)


def replace_directory(source: Path, target: Path) -> None:
    """Rename folder ``source`` to ``target``; an existing ``target`` is moved aside first, then deleted."""
    import shutil
    import uuid

    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
        os.replace(target, old)
    os.replace(source, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- scratch folders ----------------------------------------------------------------------------

_scratch_folders: set[Path] = set()


def scratch_folder(parent: str | os.PathLike, prefix: str) -> Path:
    """A new folder ``<parent>/<prefix>pid<id>-<random>`` for this process's temporary files.

    It is removed when the process exits (if still there), and a later call
    with the same ``prefix`` in the same ``parent`` removes the folders of
    processes that are gone (killed, or interrupted while cleaning up), so
    none stays forever.  Remove it sooner with :func:`remove_scratch`.
    """
    import shutil

    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for left in parent.glob(f"{glob_escape(prefix)}pid*-*"):
        match = re.match(r"pid(\d+)-", left.name[len(prefix):])
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            shutil.rmtree(left, ignore_errors=True)
    if not _scratch_folders:
        import atexit

        atexit.register(_remove_scratch_at_exit)
    path = Path(tempfile.mkdtemp(prefix=f"{prefix}pid{os.getpid()}-", dir=parent))
    _scratch_folders.add(path)
    return path


def remove_scratch(path: str | os.PathLike) -> None:
    """Remove a folder made by :func:`scratch_folder` (and forget it)."""
    import shutil

    _scratch_folders.discard(Path(path))
    shutil.rmtree(path, ignore_errors=True)


def _remove_scratch_at_exit() -> None:
    try:
        for path in list(_scratch_folders):
            if f"pid{os.getpid()}-" in path.name:  # a forked child leaves its parent's folders alone
                remove_scratch(path)
    except KeyboardInterrupt:  # Ctrl-C while exiting: the next run removes what is left
        pass
