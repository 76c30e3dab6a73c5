"""Helpers of the bad-input suites: run the CLI in-process, snapshot folders, check one-line errors."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import tifffile

from napari_autosam.cli import main


def cli(capfd, *argv) -> tuple[int, str]:
    """Run ``napari-autosam ARGV`` in this process (the console script's own ``main``); (exit code, stdout+stderr)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capfd.readouterr()
    return code, out + err


def snapshot(root: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """``{relative path: sha1}`` of every file under ``root`` (lock files excepted: they hold nothing)."""
    files = {}
    for path in sorted(Path(root).rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not path.name.endswith(".lock") and not rel.startswith(skip):
            files[rel] = hashlib.sha1(path.read_bytes()).hexdigest()
    return files


def assert_error(code, text: str, *names: str) -> None:
    """A non-zero exit, no traceback, an error line, and every one of ``names`` in the output."""
    assert code not in (0, None), text
    assert "Traceback" not in text, text
    assert "error" in text, text
    for name in names:
        assert str(name) in text, f"{name!r} not in:\n{text}"


def assert_nothing_changed(before: dict, after: dict, *, allow_new: tuple[str, ...] = ()) -> None:
    """No file changed or vanished; new ones only under ``allow_new`` prefixes."""
    lost = {k for k in before if k not in after or after[k] != before[k]}
    new = {k for k in after if k not in before and not k.startswith(allow_new)}
    assert not lost, f"changed or lost: {sorted(lost)}"
    assert not new, f"left behind: {sorted(new)}"


def gray_tif(path: Path, shape=(48, 56), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    image = rng.normal(100, 20, shape).astype(np.float32)
    image[10:25, 12:30] += 80
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, image)
    return path


def truncated_zlib_tif(path: Path) -> Path:
    """A tiled, zlib-compressed TIFF whose tile data is cut in half: it opens, but fails while decoding."""
    image = np.random.default_rng(1).integers(0, 255, (256, 256), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, image, tile=(64, 64), compression="zlib")
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offsets, counts = page.dataoffsets, page.databytecounts
    data = bytearray(path.read_bytes())
    for offset, count in zip(offsets[len(offsets) // 2 :], counts[len(counts) // 2 :]):
        data[offset + count // 2 : offset + count] = b"\0" * (count - count // 2)
    path.write_bytes(bytes(data))
    return path


class Payload:
    """A pickle that would create a file if it were ever unpickled without ``weights_only``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious_pickle(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"image_encoder.patch_embed.proj.weight": Payload(marker)}, path)
    return path


def plain_pickle(path: Path) -> Path:
    path.write_bytes(pickle.dumps({"not": "weights"}, protocol=2))
    return path
