"""Per-channel scaling of a multichannel stack (a model with a modality adapter reads every channel).

Every channel is scaled on its own over the whole stack: training
(:mod:`napari_autosam.training.volumes`) and segmentation of a stack with depth
adapters use the same rule, from here.
"""

from __future__ import annotations

import numpy as np

from .normalize import Normalization, compute_normalization, to_rgb_uint8


def channel_normalizations(image, channel_axis: int | None,
                           percentiles: tuple[float, float] = (0.5, 99.5)) -> list[Normalization]:
    """One percentile scaling per channel of a ``Z×Y×X×C`` stack (strided sample of the whole stack)."""
    if channel_axis is None:
        return [compute_normalization(image, percentiles=percentiles)]
    count = int(np.shape(image)[channel_axis])
    return [compute_normalization(image, channel_axis=channel_axis, channels=(c,), percentiles=percentiles)
            for c in range(count)]


def scale_channels(plane: np.ndarray, norms: list[Normalization]) -> np.ndarray:
    """``h×w×C`` plane → ``h×w×C`` uint8, channel ``c`` scaled by ``norms[c]``."""
    if plane.ndim == 2:
        plane = plane[..., None]
    return np.stack([to_rgb_uint8(plane, channel_axis=2, normalization=norm)[0][..., 0] if plane.shape[-1] > 1
                     else to_rgb_uint8(plane[..., 0], normalization=norm)[0][..., 0] for norm in norms], axis=-1)
