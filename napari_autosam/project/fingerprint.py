"""A cheap fingerprint of a slide file, so that a moved, replaced or rewritten slide is noticed.

Hashing a 3 GB slide would take longer than opening it, so the fingerprint is
its size in bytes, its modification time, and a SHA-1 of its first and last
:data:`EDGE` bytes (the TIFF header and the directories that describe its
pyramid sit there, as do most of the tiles' offsets).  A slide *folder*
(OME-Zarr, or MRXS's data folder) is fingerprinted by the names and sizes of
its top two levels of entries and the bytes of its small metadata files.

Comparing: size and hash must match; a new modification time alone (a
copy to another machine) is not a change.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

#: Bytes hashed at each end of a slide file.
EDGE = 1 << 20
#: Metadata files of a slide folder whose bytes go into its hash.
_FOLDER_META = (".zattrs", ".zgroup", "zarr.json", ".zarray", "Slidedat.ini")


@dataclass(frozen=True)
class Fingerprint:
    """``size`` (bytes; entries for a folder), ``mtime`` (seconds) and ``digest`` (hex) of a slide."""

    size: int
    mtime: float
    digest: str

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data) -> Fingerprint:
        try:
            return cls(int(data["size"]), float(data["mtime"]), str(data["digest"]))
        except (TypeError, KeyError, ValueError):
            raise ValueError(f"a slide fingerprint must be {{size, mtime, digest}}, got {data!r}") from None


def _file_digest(path: Path, size: int) -> str:
    digest = hashlib.sha1(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(EDGE))
        if size > EDGE:
            fh.seek(max(EDGE, size - EDGE))
            digest.update(fh.read(EDGE))
    return digest.hexdigest()


def _folder_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha1()
    count = 0
    for entry in sorted(path.iterdir()):
        inner = sorted(entry.iterdir()) if entry.is_dir() else [entry]
        for item in inner:
            count += 1
            size = item.stat().st_size if item.is_file() else -1
            digest.update(f"{item.relative_to(path).as_posix()}:{size}\n".encode())
            if item.is_file() and item.name in _FOLDER_META and size <= EDGE:
                digest.update(item.read_bytes())
    return count, digest.hexdigest()


def fingerprint(path: str | os.PathLike) -> Fingerprint:
    """The fingerprint of a slide file or folder (reads at most 2 MiB of a file)."""
    path = Path(path)
    stat = path.stat()
    if path.is_dir():
        count, digest = _folder_digest(path)
        return Fingerprint(count, stat.st_mtime, digest)
    return Fingerprint(stat.st_size, stat.st_mtime, _file_digest(path, stat.st_size))


def difference(recorded: Fingerprint, now: Fingerprint) -> str | None:
    """What changed between two fingerprints, in words (None: the same slide)."""
    if recorded.size != now.size:
        return f"its size changed from {recorded.size:,} to {now.size:,} bytes"
    if recorded.digest != now.digest:
        return "its contents changed (same size, different bytes at its start or end)"
    return None
