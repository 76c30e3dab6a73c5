"""Defaults the command line and the widget both offer, importable without torch (a lean ``--help``).

The training package imports torch on import, so a default its front ends
show in their help and spin boxes lives here, once.
"""

from __future__ import annotations

__all__ = ["DEFAULT_TIME_LIMIT"]

#: The default training time of ``napari-autosam train`` and the widget's fine-tuning (seconds, both stages):
#: a few minutes on a 2-core CPU.  The Python API (``TrainConfig``) has no limit by default.
DEFAULT_TIME_LIMIT = 170.0
