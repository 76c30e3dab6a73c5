"""The job layer: segmenting input files to their outputs, for the command line, the Dask path and the widget.

One file goes in, its files come out (:func:`.segment.segment_file`),
configured by a typed :class:`.options.SegmentOptions`: reading at a
working resolution (:mod:`.reading`), the tiling rule, and writing TIFF,
OME-Zarr and GeoJSON (:mod:`.geojson_outputs`, :mod:`.class_outputs`);
a batch of files gets its output folders and names from :mod:`.batch`.
The command line turns its options into a ``SegmentOptions`` and calls
this layer; :mod:`napari_autosam.distributed` runs the same step on its
workers; nothing here imports the command line, napari or Qt.

The names below are imported on first use, so that ``napari-autosam --help``
stays free of torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CommandError": "errors",
    "Job": "batch",
    "SegmentOptions": "options",
    "make_segmenter": "segment",
    "output_format": "segment",
    "output_stem": "segment",
    "plan_jobs": "batch",
    "segment_file": "segment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
