"""Training stacks for the depth-adapter mode: volumes of slices with masks, checked, and cut into windows.

A :class:`Volume` holds a whole stack (``Z×H×W×C`` uint8, every channel scaled
to 0-255; ``C = 3`` is SAM's RGB) and its ``Z×H×W`` mask.  Volumes come from
arrays, from a folder, or from the per-slice samples of
:func:`~napari_autosam.training.data.samples_from_arrays` (slices sharing a
``source`` are put back together).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..sam.adapters import depth_windows
from ..sam.embedding import LOGIT_SIZE, mask_to_padded_frame
from .data import Sample, TrainingDataError


@dataclass(eq=False)
class Volume:
    """One training stack.

    channels : ``Z×H×W×C`` uint8, each channel scaled to 0-255 (``C = 3``: RGB, SAM's own input)
    mask : ``Z×H×W`` bool foreground
    """

    name: str
    channels: np.ndarray
    mask: np.ndarray
    normalization: object = None

    @property
    def key(self) -> str:
        return hashlib.sha1(np.ascontiguousarray(self.channels).tobytes()).hexdigest()

    @property
    def in_channels(self) -> int:
        return int(self.channels.shape[-1])


def volumes_from_samples(samples: Sequence[Sample]) -> list[Volume]:
    """Slices of one stack (the samples sharing a ``source``, in order) put back together as volumes."""
    groups: dict[str, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.source or sample.name, []).append(sample)
    volumes = []
    for source, group in groups.items():
        shapes = {s.image.shape for s in group}
        if len(shapes) != 1:
            raise TrainingDataError(f"{source}: its slices differ in shape ({sorted(shapes)}); "
                                    "depth adapters need one stack of equal slices")
        volumes.append(Volume(source, np.stack([s.image for s in group]), np.stack([s.mask for s in group]),
                              group[0].normalization))
    return volumes


def _channel_volume(image: np.ndarray, mask: np.ndarray, name: str, percentiles) -> Volume:
    """A ``Z×Y×X×C`` multichannel stack: every channel scaled on its own over the whole stack (as segmentation does)."""
    from ..io.channel_scaling import channel_normalizations, scale_channels

    norms = channel_normalizations(image, 3, percentiles)
    return Volume(name, np.stack([scale_channels(image[z], norms) for z in range(len(image))]), mask > 0)


def volumes_from_arrays(images: Sequence, masks: Sequence, names: Sequence[str] | None = None, *,
                        multichannel: bool = True, percentiles: tuple[float, float] = (0.5, 99.5)) -> list[Volume]:
    """Training volumes from ``Z×Y×X`` (gray), ``Z×Y×X×3`` (RGB) or ``Z×Y×X×C`` stacks and ``Z×Y×X`` masks.

    A 4D stack whose last axis is not 3 keeps all ``C`` channels (for a
    modality adapter) when ``multichannel``; otherwise it is shown as RGB
    the usual way (:func:`~napari_autosam.io.normalize.to_rgb_uint8`).
    """
    from .data import samples_from_pair

    images, masks = list(images), list(masks)
    names = list(names) if names is not None else [f"stack_{i:03d}" for i in range(len(images))]
    if not (len(images) == len(masks) == len(names)):
        raise TrainingDataError(f"{len(images)} stacks, {len(masks)} masks and {len(names)} names")
    volumes = []
    for image, mask, name in zip(images, masks, names):
        image, mask = np.asarray(image), np.asarray(mask)
        if mask.ndim != 3 or image.shape[:3] != mask.shape or image.ndim not in (3, 4):
            raise TrainingDataError(f"{name}: depth adapters need a Z×Y×X[×C] stack with a Z×Y×X mask; "
                                    f"got image {tuple(image.shape)} and mask {tuple(mask.shape)}")
        if image.ndim == 4 and image.shape[-1] != 3 and multichannel:
            volumes.append(_channel_volume(image, mask, name, percentiles))
        else:
            volumes += volumes_from_samples(samples_from_pair(image, mask, name, source=name,
                                                              channel_axis=-1 if image.ndim == 4 else None,
                                                              percentiles=percentiles))
    return volumes


def load_volumes(images_dir, masks_dir, *, multichannel: bool = True) -> list[Volume]:
    """Stacks of a folder and their masks, matched by file stem (:func:`~napari_autosam.io.images.pair_images_and_masks`)."""
    from ..io.images import pair_images_and_masks, read_image, read_mask

    pairs = pair_images_and_masks(images_dir, masks_dir)
    if not pairs:
        raise TrainingDataError(f"no image in {images_dir} has a mask in {masks_dir}")
    return volumes_from_arrays([read_image(i) for i, _ in pairs], [read_mask(m) for _, m in pairs],
                               [str(i) for i, _ in pairs], multichannel=multichannel)


def _as_volumes(data) -> list[Volume]:
    data = list(data)
    if data and all(isinstance(d, Volume) for d in data):
        return data
    return volumes_from_samples(data)


def check_volumes(volumes: Sequence[Volume], depth_window: int) -> None:
    """One clear line for a stack shorter than the window, mixed channel counts, or nothing to learn."""
    if not volumes:
        raise TrainingDataError("no training stacks were given")
    for volume in volumes:
        depth_windows(len(volume.channels), depth_window, what=volume.name)
    counts = {v.in_channels for v in volumes}
    if len(counts) > 1:
        raise TrainingDataError(f"the stacks have different channel counts {sorted(counts)}; "
                                "one model's modality adapter takes one count")
    if not any(v.mask.any() for v in volumes):
        raise TrainingDataError("every mask is empty, so there is nothing to learn")


def inter_slice_dice(masks) -> float:
    """Mean Dice between the masks of consecutive slices of a ``Z×H×W`` stack (1.0: nothing changes along depth).

    Compare a prediction's value with the ground truth's: a slice-wise model
    that flickers from slice to slice scores lower than the truth.
    """
    from ..losses import dice

    masks = np.asarray(masks) > 0
    if len(masks) < 2:
        return 1.0
    return float(np.mean([dice(masks[z], masks[z + 1]) for z in range(len(masks) - 1)]))


def window_tensors(volume: Volume, start: int, depth: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(channels D×C×H×W float 0-255, targets D×1×256×256 soft)`` of slices ``start..start+D-1``."""
    channels = torch.from_numpy(np.ascontiguousarray(volume.channels[start : start + depth])).permute(0, 3, 1, 2)
    targets = torch.stack([mask_to_padded_frame(m, LOGIT_SIZE) for m in volume.mask[start : start + depth]])
    return channels.float().to(device), targets.to(device)
