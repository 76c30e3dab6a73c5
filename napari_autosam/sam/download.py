"""Download the official SAM checkpoints once, check them, and cache them.

Checkpoints live in :func:`napari_autosam.paths.checkpoint_dir`: the platform's
user cache directory (``platformdirs.user_cache_dir("napari-autosam")``)
unless the environment variable ``NAPARI_AUTOSAM_CACHE`` names another one.

The files are fetched from ``https://dl.fbaipublicfiles.com/segment_anything/``
unless ``NAPARI_AUTOSAM_CHECKPOINT_URL`` names a mirror: a base URL (``http://``,
``https://`` or ``file://``) under which the same file names are served.

Downloads stream into a temporary file beside the destination and are moved
into place only after the byte count and the MD5 checksum match, so an
interrupted, cut-off, corrupted or cancelled transfer never leaves a file that
looks like a checkpoint.  Both :func:`download` and :func:`ensure_checkpoint`
are generators that yield :class:`~napari_autosam.progress.Progress` events and
return the checkpoint path; drive them with :func:`napari_autosam.progress.run`.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_autosam.io.atomic import atomic_path, atomic_write_text, remove_stale_parts
from napari_autosam.paths import CACHE_ENV, cache_dir, checkpoint_dir  # noqa: F401  (the locations' one home)
from napari_autosam.progress import Cancelled, CancelToken, Progress, Stopwatch

#: Environment variable naming a mirror base URL for the checkpoint files.
URL_ENV = "NAPARI_AUTOSAM_CHECKPOINT_URL"
#: Where Meta serves the official SAM checkpoints.
DEFAULT_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"

_CHUNK = 1 << 20  # 1 MiB: one progress event per MiB is plenty and cheap
_MARKER_SUFFIX = ".md5ok"


class DownloadError(Exception):
    """A checkpoint could not be downloaded, or a cached one is not the expected file."""


@dataclass(frozen=True)
class CheckpointInfo:
    """One official SAM checkpoint.

    Attributes
    ----------
    name : str
        The variant, e.g. ``"vit_b"``.
    filename : str
        The file name, both on the server and in the cache.
    url : str
        The official download URL (a mirror set by ``NAPARI_AUTOSAM_CHECKPOINT_URL``
        replaces its base, see :func:`checkpoint_url`).
    size : int
        Exact file size in bytes.
    md5 : str
        MD5 checksum, 32 lower-case hex digits.
    """

    name: str
    filename: str
    url: str
    size: int
    md5: str


def _official(name: str, filename: str, size: int, md5: str) -> CheckpointInfo:
    return CheckpointInfo(name=name, filename=filename, url=DEFAULT_BASE_URL + filename, size=size, md5=md5)


#: The official SAM checkpoints by variant name (figures from docs/checkpoints.md).
OFFICIAL_CHECKPOINTS: dict[str, CheckpointInfo] = {
    info.name: info
    for info in (
        _official("vit_b", "sam_vit_b_01ec64.pth", 375_042_383, "01ec64d29a2fca3f0661936605ae66f8"),
        _official("vit_l", "sam_vit_l_0b3195.pth", 1_249_524_607, "0b3195507c641ddb6910d2bb5adee89c"),
        _official("vit_h", "sam_vit_h_4b8939.pth", 2_564_550_879, "4b8939a88964f0f4ff5f5b2642c598a6"),
    )
}


def checkpoint_info(name: str) -> CheckpointInfo:
    """The :class:`CheckpointInfo` for a variant name; ValueError naming the valid ones otherwise."""
    try:
        return OFFICIAL_CHECKPOINTS[name]
    except KeyError:
        valid = ", ".join(sorted(OFFICIAL_CHECKPOINTS))
        raise ValueError(f"unknown SAM checkpoint {name!r}; valid names are: {valid}") from None


def checkpoint_url(info: CheckpointInfo) -> str:
    """Where to fetch ``info``: its official URL, or the same file under ``$NAPARI_AUTOSAM_CHECKPOINT_URL``."""
    base = os.environ.get(URL_ENV, "").strip()
    if not base:
        return info.url
    return base.rstrip("/") + "/" + info.filename


def checkpoint_path(name: str, directory: str | os.PathLike | None = None) -> Path:
    """Where the checkpoint ``name`` is (or would be) cached; the file need not exist."""
    info = checkpoint_info(name)
    folder = Path(directory) if directory is not None else checkpoint_dir()
    return folder / info.filename


# ----------------------------------------------------------------------------- checksums


def _hash_chunks(path: Path, digest: Any, chunk: int) -> Iterator[int]:
    """Feed ``path`` into ``digest`` chunk by chunk, yielding the bytes done so far."""
    done = 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
            done += len(block)
            yield done


def md5sum(path: str | os.PathLike, chunk: int = _CHUNK) -> str:
    """MD5 of a file as 32 lower-case hex digits, read ``chunk`` bytes at a time."""
    digest = hashlib.md5(usedforsecurity=False)
    for _ in _hash_chunks(Path(path), digest, chunk):
        pass
    return digest.hexdigest()


def _marker(path: Path) -> Path:
    return path.with_name(path.name + _MARKER_SUFFIX)


def _marker_text(path: Path, md5: str) -> str:
    # Tie the marker to this very file: replacing the file invalidates it.
    stat = path.stat()
    return f"{md5.lower()} {stat.st_size} {stat.st_mtime_ns}\n"


def _has_valid_marker(path: Path, md5: str) -> bool:
    try:
        return _marker(path).read_text(encoding="ascii") == _marker_text(path, md5)
    except (OSError, UnicodeDecodeError):
        return False


def _write_marker(path: Path, md5: str) -> None:
    atomic_write_text(_marker(path), _marker_text(path, md5))


def _verify(path: Path, md5: str, cancel: CancelToken | None) -> Generator[Progress, None, bool]:
    """Check ``path`` against ``md5`` (yielding ``"verify"`` progress) and record a marker on success."""
    total = path.stat().st_size
    clock = Stopwatch(total)
    digest = hashlib.md5(usedforsecurity=False)
    for done in _hash_chunks(path, digest, _CHUNK):
        _check_cancel(cancel, f"checking {path.name}")
        yield clock.event("verify", done, f"Checking {path.name}: {_mb(done)} / {_mb(total)}")
    if digest.hexdigest() != md5.lower():
        return False
    _write_marker(path, md5)
    return True


# ----------------------------------------------------------------------------- download


def _mb(nbytes: int | None) -> str:
    return "?" if nbytes is None else f"{nbytes / 1e6:.1f} MB"


def _check_cancel(cancel: CancelToken | None, what: str) -> None:
    if cancel is not None and cancel.cancelled:
        raise Cancelled(f"cancelled while {what}")


def _by_hand(url: str, dest: Path, *, md5: str | None = None, size: int | None = None) -> str:
    """Instructions for installing the file without this program's help."""
    facts = []
    if size is not None:
        facts.append(f"{size:,} bytes")
    if md5:
        facts.append(f"MD5 {md5}")
    lines = [
        "To install it by hand, download",
        f"    {url}",
        "on a machine with internet access and copy it (creating the folder if needed) to",
        f"    {dest}",
    ]
    if facts:
        lines.append(f"(it must be {', '.join(facts)})")
    return "\n".join(lines)


def _reason(err: BaseException) -> str:
    """A short, user-facing description of a network or file-system error."""
    import http.client
    import urllib.error

    if isinstance(err, urllib.error.HTTPError):
        return f"the server answered HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        if isinstance(err.reason, BaseException):
            return _reason(err.reason)
        return f"the server could not be reached ({err.reason})"
    if isinstance(err, TimeoutError):  # socket.timeout is TimeoutError since Python 3.10
        return "the connection timed out (are you offline?)"
    if isinstance(err, socket.gaierror):
        return f"the server name could not be resolved (are you offline?) ({err})"
    if isinstance(err, http.client.IncompleteRead):
        return f"the transfer was cut off: the connection closed after {len(err.partial):,} bytes of a read"
    if isinstance(err, ConnectionError):
        return f"the connection failed ({err.strerror or type(err).__name__}; are you offline?)"
    if isinstance(err, http.client.HTTPException):
        return f"the server sent a broken answer ({type(err).__name__}: {err})"
    return str(err) or type(err).__name__


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _stream(
    response, tmp: Path, total: int | None, name: str, chunk_size: int, cancel: CancelToken | None
) -> Generator[Progress, None, tuple[int, str]]:
    """Copy ``response`` into ``tmp``; return (bytes written, MD5 hex)."""
    clock = Stopwatch(total)
    digest = hashlib.md5(usedforsecurity=False)
    done = 0
    with open(tmp, "wb") as fh:
        while True:
            _check_cancel(cancel, f"downloading {name}")
            block = response.read(chunk_size)
            if not block:
                break
            fh.write(block)
            digest.update(block)
            done += len(block)
            rate = done / max(clock.elapsed, 1e-6) / 1e6
            yield clock.event("download", done, f"Downloading {name}: {_mb(done)} / {_mb(total)}", mb_per_s=rate)
        fh.flush()
        os.fsync(fh.fileno())
    return done, digest.hexdigest()


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    md5: str | None = None,
    size: int | None = None,
    timeout: float = 30.0,
    cancel: CancelToken | None = None,
    chunk_size: int = _CHUNK,
) -> Generator[Progress, None, Path]:
    """Download ``url`` to ``dest``, checking its size and MD5 before moving it into place.

    A generator: yields ``Progress(phase="download", step=bytes_done,
    total=size or Content-Length)`` once per chunk and returns ``dest``.

    Parameters
    ----------
    url : ``http(s)://`` or ``file://`` URL
    dest : the final location; its directory is created if needed
    md5 : the expected MD5 (hex), optional; checked before the file is moved into place
    size : the expected size in bytes, optional; fewer or more bytes is an error
    timeout : seconds to wait for the connection and for each read
    cancel : a CancelToken, optional, checked between chunks; when set, :class:`Cancelled` is raised
    chunk_size : bytes per read (and per progress event)

    Raises
    ------
    DownloadError
        HTTP or connection error, time-out, cut-off transfer, wrong size or
        checksum.  The message names the URL and the path where the file can
        be put by hand.  Nothing is left at ``dest`` or beside it.
    Cancelled
        ``cancel`` was set; nothing is left behind either.
    """
    import http.client  # here, not at the top: a segment run that loads a local file needs no networking
    import urllib.error
    import urllib.request

    dest = Path(dest)
    hint = _by_hand(url, dest, md5=md5, size=size)
    request = urllib.request.Request(url, headers={"User-Agent": "napari-autosam"})
    remove_stale_parts(dest)  # what a killed download left behind
    try:
        with atomic_path(dest, owned=True) as tmp, urllib.request.urlopen(request, timeout=timeout) as response:
            announced = _content_length(response)
            _check_announced(url, dest, announced, size, hint)
            expected = size if size is not None else announced
            done, digest = yield from _stream(response, tmp, expected, dest.name, chunk_size, cancel)
            _check_received(url, dest, done, expected, digest, md5, hint)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        raise DownloadError(f"could not download {dest.name} from {url}: {_reason(err)}.\n{hint}") from err
    return dest


def _check_announced(url: str, dest: Path, announced: int | None, size: int | None, hint: str) -> None:
    """DownloadError when the server announces another size than the file should have."""
    if size is not None and announced is not None and announced != size:
        raise DownloadError(
            f"{url} is {announced:,} bytes but {dest.name} should be {size:,} bytes; "
            f"the server (or mirror) holds a different file.\n{hint}"
        )


def _check_received(url: str, dest: Path, done: int, expected: int | None, digest: str, md5, hint: str) -> None:
    """DownloadError when the bytes received are cut off, too many, or fail the MD5 check."""
    if expected is not None and done != expected:
        what = "cut off" if done < expected else "longer than expected"
        raise DownloadError(
            f"the download of {dest.name} from {url} was {what}: got {done:,} of {expected:,} bytes. "
            f"Nothing was saved; try again.\n{hint}"
        )
    if md5 is not None and digest != md5.lower():
        raise DownloadError(
            f"checksum mismatch for {dest.name} from {url}: MD5 is {digest}, expected {md5.lower()}. "
            f"The file was discarded; try again or use another mirror.\n{hint}"
        )


# ----------------------------------------------------------------------------- cache


def ensure_checkpoint(
    name: str,
    *,
    directory: str | os.PathLike | None = None,
    allow_download: bool = True,
    verify: bool = False,
    timeout: float = 30.0,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, Path]:
    """Return the path of the official checkpoint ``name``, downloading it if it is not cached.

    A generator: yields download (or ``"verify"``) progress and returns the path.

    A cached file is accepted when its size is right; its MD5 is checked when it
    is freshly downloaded, or when ``verify=True`` and it has not been checked
    before (a ``<file>.md5ok`` marker beside it records a successful check).
    A cached file of the wrong size, or failing the check, is downloaded
    again (replaced only once the new copy is verified) when ``allow_download``.

    Parameters
    ----------
    name : str
        ``"vit_b"``, ``"vit_l"`` or ``"vit_h"``.
    directory : path, optional
        Where to look and download to; default :func:`checkpoint_dir`.
    allow_download : bool
        When False, a missing or bad file raises :class:`DownloadError` with
        instructions for putting it in place by hand.
    verify : bool
        Check the MD5 of a cached file that has no ``.md5ok`` marker yet.

    Raises
    ------
    ValueError
        Unknown ``name``.
    DownloadError
        The file is missing or bad and cannot (or may not) be downloaded.
    """
    info = checkpoint_info(name)
    path = checkpoint_path(name, directory)
    url = checkpoint_url(info)
    problem = yield from _cached_problem(path, info, verify=verify, cancel=cancel)
    if problem is None:
        return path
    if not allow_download:
        raise DownloadError(
            f"SAM checkpoint {info.name} ({info.filename}) {problem}, and downloading is switched off.\n"
            + _by_hand(url, path, md5=info.md5, size=info.size)
        )
    yield from download(url, path, md5=info.md5, size=info.size, timeout=timeout, cancel=cancel)
    _write_marker(path, info.md5)
    return path


def _cached_problem(
    path: Path, info: CheckpointInfo, *, verify: bool, cancel: CancelToken | None
) -> Generator[Progress, None, str | None]:
    """What is wrong with the cached copy at ``path`` (None if it is usable)."""
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        return f"is not in {path.parent}"
    if actual != info.size:
        return f"at {path} has {actual:,} bytes instead of {info.size:,}"
    if verify and not _has_valid_marker(path, info.md5):
        if not (yield from _verify(path, info.md5, cancel)):
            return f"at {path} does not match its MD5 checksum {info.md5}"
    return None
