"""Before any work, the inputs of a segmentation checked as a whole.

* When no input exists, the run stops before any model is loaded, naming
  them (with some there, each missing one is a failed file of the batch).
* An input that is one of the package's own outputs (a mask or an OME-Zarr
  label image it wrote, :mod:`napari_autosam.io.own_outputs`) is skipped
  with a line saying what it is; if nothing else is left, that is the error.
* No file any job may write can replace an input
  (:func:`napari_autosam.io.overwrite.check_outputs`).
* :func:`nothing_left_on_failure` removes what a file that fails had
  written, so a failed file leaves nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["check_segment_outputs", "nothing_left_on_failure", "possible_outputs", "segment_inputs"]

#: Every name ``segment`` may write for a stem: TIFFs (masks, labels, probabilities, classes), OME-Zarr labels,
#: GeoJSON, the instance classes table and the measurements (``--measure``).
_TIFF_ROLES = ("autosam", "h", "instances", "autosam_prob", "h_prob", "classes", "h_classes")
_ZARR_ROLES = ("autosam", "h", "instances")
_GEOJSON_ROLES = ("autosam", "h", "instances", "classes")
_TABLES = ("instance_classes.csv", "objects.csv", "summary.csv", "report.html", "tiles.csv")  # classes; --measure; two-speed


def possible_outputs(out_dir: Path, stem: str) -> list[Path]:
    """Every path segmenting an input named ``stem`` into ``out_dir`` may write."""
    from ..io.labels_zarr import labels_path

    return ([out_dir / f"{stem}_{role}.tif" for role in _TIFF_ROLES]
            + [labels_path(out_dir, stem, role) for role in _ZARR_ROLES]
            + [out_dir / f"{stem}_{role}.geojson" for role in _GEOJSON_ROLES]
            + [out_dir / f"{stem}_{name}" for name in _TABLES])


def segment_inputs(inputs: Sequence[str | os.PathLike], command: str = "segment") -> list[Path]:
    """The inputs to segment, the package's own outputs skipped; ValueError when none exists (before any model)."""
    from ..io.own_outputs import own_output

    paths = [Path(p).expanduser() for p in inputs]
    missing = [str(p) for p in paths if not p.exists()]
    if missing and len(missing) == len(paths):  # with some there, the batch reports each missing one and goes on
        raise ValueError(f"{', '.join(missing[:10])}{' …' if len(missing) > 10 else ''}: no such file or folder; "
                         "nothing to segment")
    kept, skipped = [], []
    for path in paths:
        what = own_output(path)
        if what:
            skipped.append(f"{path}: {what}")
            print(f"napari-autosam {command}: skipped {path}: {what} (rename it to segment it anyway)",
                  file=sys.stderr)
        else:
            kept.append(path)
    if not kept:
        raise ValueError(f"nothing to segment: every input is an output of napari-autosam ({skipped[0]}"
                         f"{f' and {len(skipped) - 1} more' if len(skipped) > 1 else ''})")
    return kept


def check_segment_outputs(jobs) -> None:
    """Refuse (ValueError, one line) when any output of any job could replace one of the jobs' inputs."""
    from ..io.overwrite import check_outputs

    check_outputs((p for job in jobs for p in possible_outputs(job.out_dir, job.stem)), [job.path for job in jobs])


def _stamp(path: Path):
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_ino


@contextlib.contextmanager
def nothing_left_on_failure(out_dir: Path, stem: str) -> Iterator[None]:
    """Remove the outputs of ``stem`` written inside the block when it fails (what was there before is kept
    unless the block replaced it)."""
    candidates = possible_outputs(out_dir, stem)
    before = {path: _stamp(path) for path in candidates}
    try:
        yield
    except BaseException:
        for path in candidates:
            stamp = _stamp(path)
            if stamp is None or stamp == before[path]:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise


def check_options_fit(options, layout, path: Path) -> None:
    """Refuse (ValueError, one line) options that cannot apply to this input, before it is segmented.

    ``options`` has the ``segment`` options as attributes (``geojson``, …);
    ``layout`` is the input's :class:`~napari_autosam.inference.inputs.ImageLayout`.
    """
    if getattr(options, "geojson", False) and layout.is_stack:
        raise ValueError(f"--geojson writes the outlines of one plane, but {path.name} is a stack of "
                         f"{layout.n_planes} slices (shape {tuple(layout.shape)}); segment it without --geojson")
