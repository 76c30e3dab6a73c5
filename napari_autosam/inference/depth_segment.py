"""Segmenting a stack with a model that has depth adapters: windows of ``D`` slices through the adapted encoder.

The stack is cut along depth into windows of ``D`` slices, every ``D``
slices, the last one ending at the last slice
(:func:`~napari_autosam.sam.adapters.depth_windows`); each slice is segmented
once, by the first window that holds it, so the encoder runs about once per
slice as in slice-wise segmentation.  Planes larger than the tile are cut
into tiles first, and each tile runs through the windows.  Embeddings are not
cached (they depend on the neighbours).

A multichannel stack (a model with a modality adapter) is read with every
channel scaled on its own over the whole stack
(:func:`~napari_autosam.io.channel_scaling.channel_normalizations`), the same
scaling training uses (:mod:`napari_autosam.training.volumes`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..io.channel_scaling import channel_normalizations, scale_channels
from ..io.normalize import Normalization, to_rgb_uint8
from ..models.depth_forward import depth_forward
from ..models.logits import to_probabilities
from ..progress import CancelToken, Stopwatch, Task
from ..sam.adapters import AdapterMismatchError, depth_windows
from ..sam.embedding import Geometry
from .inputs import ImageLayout
from .outputs import Accumulator, SegmentationResult, WindowInfo
from .tiling import Tile, segmentation_tiles
from .window_steps import output_store


def _check_channels(layout: ImageLayout, adapters) -> None:
    count = 1 if layout.channel_axis is None else layout.shape[layout.channel_axis]
    if adapters.modality is not None and count != adapters.in_channels:
        raise AdapterMismatchError(f"the stack has {count} channel{'s' * (count != 1)} (shape {layout.shape}) but the "
                                   f"model's modality adapter takes {adapters.in_channels}; give a stack with "
                                   f"{adapters.in_channels} channels or a model trained on this kind of stack")


def _read(image, layout: ImageLayout, z: int, tile: Tile, adapters, normalization, channels, norms) -> np.ndarray:
    plane = layout.read(image, z, tile.window)
    if adapters.modality is None:
        return to_rgb_uint8(plane, channel_axis=layout.plane_channel_axis, channels=channels,
                            normalization=normalization)[0]
    return scale_channels(plane, norms)


def segment_stack(seg, image, layout: ImageLayout, *, normalization: Normalization, channels=None,
                  mode: str = "semantic", options=None, tile: int | None = None, overlap: int = 128,
                  store=None, cancel: CancelToken | None = None) -> Task[SegmentationResult]:
    """What :meth:`Segmenter.segment` does for a stack when its model has depth adapters.

    Raises :class:`~napari_autosam.sam.adapters.DepthWindowError` for a stack
    shorter than the window and :class:`~napari_autosam.sam.adapters.AdapterMismatchError`
    for a channel count the modality adapter does not take, before any compute.
    """
    adapters = seg.adapters
    depth = adapters.depth_window
    starts = depth_windows(layout.n_planes, depth)
    _check_channels(layout, adapters)
    norms = channel_normalizations(image, layout.channel_axis) if adapters.modality is not None else None
    tiles = segmentation_tiles(layout.plane_shape, tile, overlap)
    store = output_store(store) if len(tiles) > 1 else None
    out = Accumulator(layout.output_shape, with_h=seg.model.surrogate is not None,
                      with_instances=mode == "instances", store=store)
    items = [(t, s) for t in tiles for s in starts]
    clock = Stopwatch(len(items))
    cancelled, done_slices = False, 0
    for n, (t, start) in enumerate(items, 1):
        if cancel is not None and cancel.cancelled:
            cancelled = True
            break
        first_new = 0 if start == starts[0] else max(0, starts[starts.index(start) - 1] + depth - start)
        planes = [_read(image, layout, z, t, adapters, normalization, channels, norms)
                  for z in range(start, start + depth)]
        pixels = torch.from_numpy(np.stack(planes)).permute(0, 3, 1, 2).to(seg.device)
        with torch.inference_mode():
            output, embedding = depth_forward(seg.model, adapters, pixels)
        geometry = Geometry(*planes[0].shape[:2])
        for k in range(first_new, depth):
            z = start + k
            autosam = to_probabilities(output.sam_logits[k : k + 1], geometry, gain=seg.probability_gain)
            h = None
            if output.h_logits is not None:
                h = to_probabilities(output.h_logits[k : k + 1], geometry)[0, 0].cpu().numpy()
            autosam = autosam[0, 0].cpu().numpy()
            out.add(z, t.slices, t.weight(), autosam, h)
            if mode == "instances":
                source = h if (options.source == "h" and h is not None) else autosam
                seg.add_instances(out, z, t, source, embedding[k : k + 1].float(), options)
            out.windows.append(WindowInfo(z, t.window, t.core, float(output.iou[k, 0])))
            done_slices += 1
        yield clock.event("segment", n, f"segmented {done_slices}/{layout.n_planes * len(tiles)} slices "
                          f"(depth windows of {depth})")
    arrays, agreement = out.finish()
    return SegmentationResult(**arrays, agreement=agreement, normalization=normalization, store=store,
                              cancelled=cancelled, untrained=seg.untrained, windows=out.windows,
                              messages=[f"depth adapters ({adapters.kind}, windows of {depth} slices)"])
