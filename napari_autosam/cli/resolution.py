"""``--mpp`` / ``--level`` for ``segment``, ``train``, ``evaluate`` and ``review``: the options only.

The rules (which inputs are slides, the model's recorded resolution as the
default, masks picked at the working resolution) are the job layer's:
:mod:`napari_autosam.jobs.reading`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["add_resolution_args", "load_samples_at", "open_input", "requested", "say"]


def add_resolution_args(parser, *, what: str = "images") -> None:
    """Add the mutually exclusive ``--mpp`` and ``--level`` options."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--mpp", type=float, default=None, metavar="UM",
                       help=f"read {what} at this many µm per pixel (from the nearest finer pyramid level, "
                       "resampled); needs calibrated slides")
    group.add_argument("--level", type=int, default=None, metavar="N",
                       help=f"read {what} at pyramid level N as stored (0: full resolution)")


def requested(args) -> dict:
    """The ``working_image`` keywords the command line asks for (``{}``: none)."""
    return {k: v for k, v in (("mpp", getattr(args, "mpp", None)), ("level", getattr(args, "level", None)))
            if v is not None}


def open_input(path: Path, args, recorded: dict | None = None):
    """:func:`napari_autosam.jobs.reading.open_input` at the resolution ``--mpp``/``--level`` ask for."""
    from ..jobs.reading import open_input as open_at

    return open_at(path, requested(args), recorded)


def say(note: str | None) -> None:
    """Print a resolution note on stderr (one line)."""
    from ..jobs.reading import say as say_note

    say_note(note)


def load_samples_at(images_dir, masks_dir, args, *, channels=None, recorded: dict | None = None, classes=None):
    """:func:`napari_autosam.jobs.reading.load_samples_at` at the resolution ``--mpp``/``--level`` ask for."""
    from ..jobs.reading import load_samples_at as load_at

    return load_at(images_dir, masks_dir, requested(args), channels=channels, recorded=recorded, classes=classes)
