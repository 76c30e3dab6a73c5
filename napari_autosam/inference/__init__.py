"""The segmentation engine: automatic AutoSAM masks, h(g(I)) and self-prompted instances.

See :class:`Segmenter`; ``docs/segmentation.md`` describes inputs, modes and tiling.
"""

from .instances import InstanceOptions
from .outputs import SegmentationResult
from .segmenter import Segmenter, default_model

__all__ = ["InstanceOptions", "SegmentationResult", "Segmenter", "default_model"]
