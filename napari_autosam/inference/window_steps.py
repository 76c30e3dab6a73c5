"""The steps every segmentation path shares: the image and its scaling, reading RGB windows, and the
probabilities of a binary model's windows.

The segmenter (:mod:`.segmenter`), the class-label path (:mod:`.class_labels`) and
the depth-adapter path (:mod:`.depth_segment`) all build on these, so none of
them imports another's internals.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..device import autocast
from ..io.normalize import Normalization, compute_normalization, to_rgb_uint8
from ..models.logits import to_probabilities
from ..sam.embedding import Geometry, prepare_image
from .inputs import ImageLayout
from .tiling import Tile, new_scratch_dir


def as_image(image):
    """Arrays (numpy or lazy) as they are; nested lists and tuples as numpy arrays; others refused."""
    if hasattr(image, "shape") and hasattr(image, "dtype"):
        return image
    try:
        return np.asarray(image)
    except (TypeError, ValueError):  # ragged lists and the like
        raise ValueError(f"image must be an array (or nested lists of equal length), "
                         f"got a {type(image).__name__} that is not one") from None


def whole_image_normalization(image, layout: ImageLayout, channels=None) -> Normalization:
    """Percentile scaling of the whole image (all slices of a stack), read from a strided subsample."""
    if layout.kind == "stack" and len(layout.shape) == 3 and layout.shape[0] <= 4:
        # A short stack that compute_normalization would take for channels: sample it as one mosaic.
        step = max(1, int(np.ceil(np.sqrt(layout.n_planes * np.prod(layout.plane_shape) / (1 << 20)))))
        mosaic = np.concatenate([np.asarray(image[z, ::step, ::step]) for z in range(layout.n_planes)])
        return compute_normalization(mosaic, channels=channels)
    return compute_normalization(image, channel_axis=layout.channel_axis, channels=channels)


def output_store(store: str | os.PathLike | None) -> Path:
    """The directory for the zarr outputs of a tiled image (a new temporary one by default)."""
    if store is None:
        return new_scratch_dir()
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    return store


def read_windows(image, layout: ImageLayout, batch: list[tuple[int, Tile]], normalization,
                 channels) -> list[np.ndarray]:
    """The ``H×W×3`` uint8 RGB windows ``(z, tile)`` of a batch, with the whole image's scaling."""
    return [to_rgb_uint8(layout.read(image, z, t.window), channel_axis=layout.plane_channel_axis,
                         channels=channels, normalization=normalization)[0] for z, t in batch]


def g_input(model, rgbs: list[np.ndarray], device) -> torch.Tensor:
    """g's input ``N×3×s×s`` of RGB windows, on ``device``."""
    return torch.cat([prepare_image(rgb, model.input_size)[0] for rgb in rgbs]).to(device)


@torch.inference_mode()
def binary_window_probabilities(model, rgbs: list[np.ndarray], embeddings: torch.Tensor | None, *, gain: float,
                                device) -> tuple[list[tuple], list[float | None]]:
    """``([(autosam h×w or None, h h×w or None)], [SAM's predicted IoU or None])`` of RGB windows.

    ``model`` is an :class:`~napari_autosam.models.autosam.AutoSAM`; ``embeddings``
    None is a preview: h(g(I)) only, no SAM.  AutoSAM's logits take ``gain``.
    """
    inputs = g_input(model, rgbs, device)
    if embeddings is None:
        with autocast(device):
            logits = model.surrogate(model.prompt_generator(inputs))
        return [(None, to_probabilities(logits[i : i + 1], Geometry(*rgb.shape[:2]))[0, 0].cpu().numpy())
                for i, rgb in enumerate(rgbs)], [None] * len(rgbs)
    with autocast(device):
        output = model(inputs, embeddings.to(device))
    results = []
    for i, rgb in enumerate(rgbs):
        geometry = Geometry(*rgb.shape[:2])
        autosam = to_probabilities(output.sam_logits[i : i + 1], geometry, gain=gain)
        h = None
        if output.h_logits is not None:
            h = to_probabilities(output.h_logits[i : i + 1], geometry)[0, 0].cpu().numpy()
        results.append((autosam[0, 0].cpu().numpy(), h))
    ious = [None] * len(rgbs) if output.iou is None else [float(v) for v in output.iou.float()[:, 0].cpu()]
    return results, ious
