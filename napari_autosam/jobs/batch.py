"""Running a command over many input files: where each file's outputs go, and one line per failure.

Output folders mirror the input folders below their common parent: inputs
all in one folder write straight into ``--out``; ``a/x.tif`` and ``b/x.tif``
write into ``--out/a`` and ``--out/b``.  Two inputs that would still write
the same names (``x.tif`` and ``x.png`` in one folder) are refused before
any work, naming both.  A file that fails is reported in one line and the
batch goes on; a summary line ends the run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import CommandError, error_message


@dataclass(frozen=True)
class Job:
    """One input file, the folder its outputs go to, and the stem they are named by."""

    path: Path
    out_dir: Path
    stem: str


def _common_parent(paths: Sequence[Path]) -> Path | None:
    try:
        return Path(os.path.commonpath([str(p.parent) for p in paths]))
    except ValueError:  # different drives: no common parent, so every folder is kept whole
        return None


def plan_jobs(inputs: Sequence[str | os.PathLike], out: Path, stem: Callable[[Path], str]) -> list[Job]:
    """The job of every input, the same file given twice counted once.

    Raises
    ------
    CommandError
        Two inputs whose outputs would have the same names, naming both.
    """
    from .preflight import check_segment_outputs, segment_inputs

    inputs = segment_inputs(inputs)  # all there (before any model loads); the package's own outputs skipped
    seen: dict[Path, Path] = {}
    for given in inputs:
        path = Path(given).expanduser()
        seen.setdefault(path.absolute().resolve(), path)
    resolved = list(seen)
    common = _common_parent(resolved)
    jobs, owners = [], {}
    for absolute, path in seen.items():
        if common is not None:
            relative = absolute.parent.relative_to(common)
        else:
            relative = Path(*absolute.parent.parts[1:])
        job = Job(path, out / relative, stem(path))
        key = (str(job.out_dir).casefold(), job.stem.casefold())  # case-insensitive file systems too
        if key in owners:
            raise CommandError(f"{owners[key].path} and {path} would both write {job.stem}_*.tif in "
                               f"{job.out_dir}; rename one of them, or segment them in separate runs")
        owners[key] = job
        jobs.append(job)
    check_segment_outputs(jobs)  # nothing any job writes can replace an input
    return jobs


def failure_line(command: str, path: Path, exc: BaseException) -> str:
    """The one line reporting that ``path`` failed, with what to do where it is known."""
    module = type(exc).__module__ or ""
    if module.startswith(("imagecodecs", "zlib", "tifffile", "zarr", "numcodecs", "PIL")):
        reason = f"the image data cannot be decoded (the file is damaged or cut off): {type(exc).__name__}: {exc}"
    else:
        reason = error_message(exc)
    return f"napari-autosam {command}: error: {path}: {reason}"


def run_jobs(command: str, jobs: Sequence[Job], work: Callable[[Job], None]) -> int:
    """Run ``work`` on every job; one line per failure, a summary at the end; exit status 1 if any failed."""
    failed, finished = [], 0
    for job in jobs:
        try:
            work(job)
        except KeyboardInterrupt:  # say what is complete: the files before this one; this one left nothing
            print(interrupted_line(command, jobs, finished - len(failed), job.path), file=sys.stderr)
            raise
        except Exception as exc:  # one bad file does not stop the others
            print(failure_line(command, job.path, exc), file=sys.stderr)
            failed.append(job.path)
        finished += 1
    done = len(jobs) - len(failed)
    summary = f"napari-autosam {command}: {done} of {len(jobs)} file{'s' if len(jobs) != 1 else ''} done"
    if failed:
        summary += f", {len(failed)} failed: " + ", ".join(str(p) for p in failed[:10])
        summary += f" (+{len(failed) - 10} more)" if len(failed) > 10 else ""
    print(summary, file=sys.stderr)
    return 1 if failed else 0


def interrupted_line(command: str, jobs: Sequence[Job], done: int, current) -> str:
    """What a Ctrl-C leaves: the ``done`` files whose outputs are complete, and the one it stopped (none of its
    outputs are kept)."""
    n = len(jobs)
    return (f"napari-autosam {command}: interrupted during {current}: {done} of {n} file{'s' if n != 1 else ''} "
            f"done before it, their outputs complete; nothing of {Path(current).name} was kept")
