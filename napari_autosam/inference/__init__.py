"""The segmentation engine: automatic AutoSAM masks, h(g(I)) and self-prompted instances.

See :class:`Segmenter`; ``docs/segmentation.md`` describes inputs, modes and tiling.
The names below are imported on first use, so that light modules such as
:mod:`.tiling` load without torch (a lean ``napari-autosam --help``).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "InstanceOptions": "instances",
    "SegmentationResult": "outputs",
    "Segmenter": "segmenter",
    "default_model": "segmenter",
}

__all__ = ["InstanceOptions", "SegmentationResult", "Segmenter", "default_model"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
