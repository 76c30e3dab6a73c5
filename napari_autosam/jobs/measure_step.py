"""``segment --measure``: measuring the objects ``segment`` just wrote for one input.

Writes ``<stem>_objects.csv``, ``<stem>_summary.csv`` and ``<stem>_report.html``
beside the labels (:func:`napari_autosam.measure.measure_segmented`) and
returns the one-line summary (objects, density per mm²) that ends the
input's report.
"""

from __future__ import annotations

from pathlib import Path


def measure_written(written, image, layout, out: Path, stem: str, resolution=None, run_task=None) -> str:
    """Measure the instances (else the AutoSAM mask) among ``written``; the summary line, or a note why not.

    ``image`` is the image ``segment`` read (a slide's working image), ``layout``
    its :class:`~napari_autosam.inference.inputs.ImageLayout`, ``resolution``
    the working resolution of a slide (None for an ordinary image).
    """
    from ..measure import MeasureInputError, measure_segmented
    from .options import quiet_run

    if layout.is_stack:
        return "not measured: measuring takes 2D images, not stacks"
    mpp = float(resolution.mpp[0]) if resolution is not None and resolution.mpp is not None else None
    downsample = float(resolution.downsample) if resolution is not None else None
    plane = image if layout.channel_axis in (None, 0, image.ndim - 1) else None  # channels first or last
    task = measure_segmented(written, plane, out, stem, mpp=mpp, downsample=downsample, workers=2)
    try:
        paths, line = (run_task or quiet_run)(task, "window")
    except MeasureInputError as exc:  # the segmentation stands; say why there are no measurements
        return f"not measured: {exc}"
    return f"{line} → " + ", ".join(Path(p).name for p in paths)
