"""SAM's prompt encoder and mask decoder on a cached embedding, in image pixels.

Shared by the interactive :meth:`Segmenter.prompt` and the self-prompted
instances: coordinates go from the user's ``H×W`` pixels into SAM's
1024-pixel frame, the decoder runs on one image embedding for a batch of
prompt sets, and its ``256×256`` logits come back to image pixels, either
whole or only inside a window (cheap for small objects in big tiles).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..sam.embedding import LOGIT_SIZE, SAM_INPUT_SIZE, Geometry, mask_to_padded_frame
from ..sam.fast_decoder import decode_prompts, fast_decoder_enabled

#: Magnitude of the logits a binary mask prompt is turned into (SAM expects logits, not 0/1).
MASK_PROMPT_LOGIT = 10.0


def _scale(geometry: Geometry) -> np.ndarray:
    """``(sx, sy)``: image pixels → SAM's 1024 frame, per axis."""
    h, w = geometry.resized(SAM_INPUT_SIZE)
    return np.array([w / geometry.width, h / geometry.height])


def check_points(points, labels, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``N×2`` ``(x, y)`` points inside an ``H×W`` image and their ``N`` labels (1 foreground, 0 background).

    Raises
    ------
    ValueError
        Naming ``points`` or ``labels``: not N×2 numbers, NaN/inf, outside the
        image, labels other than 0/1 or a count that differs.
    """
    height, width = shape
    try:
        xy = np.asarray(points, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"points must be N×2 (x, y) numbers, got {points!r}") from None
    if xy.size == 0 or xy.size % 2 or (xy.ndim == 2 and xy.shape[1] != 2) or xy.ndim > 2:
        raise ValueError(f"points must be N×2 (x, y) pixel coordinates, got shape {xy.shape}")
    xy = xy.reshape(-1, 2)
    if not np.all(np.isfinite(xy)):
        raise ValueError("points hold NaN or infinite coordinates; each point must be a finite (x, y) in pixels")
    outside = (xy[:, 0] < 0) | (xy[:, 0] > width) | (xy[:, 1] < 0) | (xy[:, 1] > height)
    if outside.any():
        x, y = xy[np.flatnonzero(outside)[0]]
        raise ValueError(f"points: ({x:g}, {y:g}) is outside the {height}×{width} image; "
                         f"x must be in 0..{width} and y in 0..{height}")
    if labels is None:
        return xy, np.ones(len(xy))
    try:
        lab = np.asarray(labels, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"labels must be 0 (background) or 1 (foreground), got {labels!r}") from None
    if len(lab) != len(xy):
        raise ValueError(f"{len(xy)} points but {len(lab)} labels")
    if not np.all(np.isin(lab, (0, 1))):
        raise ValueError(f"labels must be 0 (background) or 1 (foreground), got {sorted(set(lab.tolist()))}")
    return xy, lab


def check_box(box, shape: tuple[int, int]) -> np.ndarray:
    """A ``(x0, y0, x1, y1)`` box with ``x0 < x1``, ``y0 < y1`` overlapping an ``H×W`` image, clipped to it.

    Raises
    ------
    ValueError
        Naming ``box``: not 4 finite numbers, inverted or zero-area, or entirely outside the image.
    """
    height, width = shape
    try:
        xyxy = np.asarray(box, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"box must be 4 numbers (x0, y0, x1, y1), got {box!r}") from None
    if xyxy.size != 4 or not np.all(np.isfinite(xyxy)):
        raise ValueError(f"box must be 4 finite numbers (x0, y0, x1, y1) in pixels, got {xyxy.tolist()}")
    x0, y0, x1, y1 = xyxy
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is inverted or has no area; "
                         "expected x0 < x1 and y0 < y1")
    clipped = np.array([max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)])
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        raise ValueError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) lies outside the {height}×{width} image")
    return clipped


def points_to_sam(points_xy: np.ndarray, geometry: Geometry) -> np.ndarray:
    """``…×2`` ``(x, y)`` pixel coordinates → SAM's input frame (as its ``ResizeLongestSide`` does)."""
    return np.asarray(points_xy, dtype=np.float64) * _scale(geometry)


def boxes_to_sam(boxes_xyxy: np.ndarray, geometry: Geometry) -> np.ndarray:
    """``N×4`` ``(x0, y0, x1, y1)`` boxes in pixels → SAM's input frame."""
    corners = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 2, 2)
    return (corners * _scale(geometry)).reshape(-1, 4)


def mask_prompt(masks: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``N×H×W`` binary masks in pixels → ``N×1×256×256`` logits for SAM's mask prompt."""
    frames = [mask_to_padded_frame(m, LOGIT_SIZE) for m in masks]
    return (torch.stack(frames) * 2 - 1) * MASK_PROMPT_LOGIT


@torch.inference_mode()
def decode(
    sam,
    embedding: torch.Tensor,
    *,
    points: tuple[np.ndarray, np.ndarray] | None = None,
    boxes: np.ndarray | None = None,
    masks: torch.Tensor | None = None,
    dense: torch.Tensor | None = None,
    multimask: bool = False,
    regions: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run SAM's prompt encoder and mask decoder for ``B`` prompt sets on one embedding.

    Parameters
    ----------
    embedding : 1×256×64×64 image embedding.
    points : ``(B×N×2 xy, B×N labels)`` already in SAM's frame (:func:`points_to_sam`), or None.
    boxes : ``B×4`` in SAM's frame, or None.
    masks : ``B×1×256×256`` mask-prompt logits, or None.
    dense : ``B×256×64×64`` (or 1×…) dense prompt replacing SAM's own (e.g. AutoSAM's g(I)); wins over ``masks``.
    regions : ``B×4`` ``(y0, y1, x0, x1)`` in the logits' pixels, optional: only these are needed
        (:func:`logit_region`); the fast decoder then leaves the logits elsewhere NaN.

    Returns
    -------
    logits : ``B×K×256×256`` low-resolution logits (K = 3 with ``multimask`` else 1), on the CPU.
    scores : ``B×K`` predicted IoU.
    """
    device = next(sam.parameters()).device
    as_tensor = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=device)  # noqa: E731
    point_arg = None if points is None else (as_tensor(points[0]), torch.as_tensor(np.asarray(points[1]), device=device))
    box_arg = None if boxes is None else as_tensor(boxes)
    mask_arg = None if masks is None else masks.to(device)
    sparse, own_dense = sam.prompt_encoder(points=point_arg, boxes=box_arg, masks=mask_arg)
    if dense is not None:
        own_dense = dense.to(device, own_dense.dtype).expand(sparse.shape[0], -1, -1, -1)
    if fast_decoder_enabled():  # the same logits, computed only for the masks returned
        logits, scores = decode_prompts(sam.mask_decoder, embedding.to(device, sparse.dtype),
                                        sam.prompt_encoder.get_dense_pe(), sparse, own_dense, multimask=multimask,
                                        regions=regions)
    else:
        logits, scores = sam.mask_decoder(
            image_embeddings=embedding.to(device, sparse.dtype),
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=own_dense,
            multimask_output=multimask,
        )
    return logits.float().cpu(), scores.float().cpu()


def logit_region(geometry: Geometry, window: tuple[int, int, int, int], size: int = LOGIT_SIZE) -> tuple[int, int, int, int]:
    """The pixels ``(y0, y1, x0, x1)`` of the ``size²`` logits that :func:`logits_in_window` reads for ``window``.

    Bilinear sampling at the window's pixel centres touches the two
    neighbouring logit rows (columns) of each; one more on every side is kept
    for rounding.
    """
    h, w = geometry.resized(size)

    def span(lo: int, hi: int, original: int, resized: int) -> tuple[int, int]:
        first = math.floor((lo + 0.5) / original * resized - 0.5) - 1
        last = math.floor((hi - 0.5) / original * resized - 0.5) + 2
        return max(0, first), min(resized, last + 1)

    y0, y1, x0, x1 = window
    return (*span(y0, y1, geometry.height, h), *span(x0, x1, geometry.width, w))


def logits_in_window(logits: torch.Tensor, geometry: Geometry, window: tuple[int, int, int, int]) -> torch.Tensor:
    """Sample ``1×256×256`` padded-frame logits at the pixels of ``window = (y0, y1, x0, x1)``.

    Gives the same values as :func:`~napari_autosam.sam.embedding.frame_to_original`
    (crop the padding, bilinear resize, no corner alignment) restricted to the
    window, without resizing the whole map.
    """
    y0, y1, x0, x1 = window
    h, w = geometry.resized(logits.shape[-1])
    cropped = logits[..., :h, :w].float().reshape(1, 1, h, w)
    ys = (torch.arange(y0, y1, dtype=torch.float32) + 0.5) / geometry.height * 2 - 1
    xs = (torch.arange(x0, x1, dtype=torch.float32) + 0.5) / geometry.width * 2 - 1
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]
    return F.grid_sample(cropped, grid, mode="bilinear", padding_mode="border", align_corners=False)[0, 0]
