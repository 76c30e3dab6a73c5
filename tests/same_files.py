"""Output folders compared as a user would: masks, labels and tables byte for byte, probability maps to float precision.

One process runs torch with two threads and a dask worker with one; the sums in
SAM's encoder then round differently in the last bit, so a ``*_prob.tif`` may
differ by ~1e-7 while every mask, label image and table is the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

#: Largest difference allowed between two probability maps (float32 rounding of thread-dependent sums).
PROBABILITY_TOLERANCE = 1e-5


def differences(out, reference) -> list[str]:
    """Names of the files in folder ``out`` that differ from ``reference`` (a folder or ``{name: bytes}``)."""
    out = Path(out)
    ours = {p.name: p.read_bytes() for p in out.iterdir()}
    theirs = reference if isinstance(reference, dict) else {p.name: p.read_bytes() for p in Path(reference).iterdir()}
    if ours.keys() != theirs.keys():
        return sorted(ours.keys() ^ theirs.keys())
    differing = []
    for name, data in ours.items():
        if data == theirs[name]:
            continue
        if name.endswith("_prob.tif"):
            a, b = tifffile.imread(out / name), _read_bytes(theirs[name])
            if a.dtype == b.dtype and a.shape == b.shape and np.abs(a.astype(np.float64) - b).max() <= PROBABILITY_TOLERANCE:
                continue
        differing.append(name)
    return differing


def _read_bytes(data: bytes) -> np.ndarray:
    import io

    return tifffile.imread(io.BytesIO(data))
