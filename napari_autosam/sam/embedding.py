"""SAM's pre-processing, image embeddings, and the way back to image pixels.

Frames used throughout the package:

* the *original* frame: the user's image, ``H×W``;
* SAM's *padded* frame: the image resized so its long side is ``size``
  (1024 for the image encoder, ``input_size`` for the prompt generator,
  256 for the decoder's logits), then padded at the bottom and right to a
  square.  The same geometry at every size keeps g's 64×64 output, SAM's
  64×64 embedding and the 256×256 logits aligned pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..device import Precision, module_precision, resolve_precision
from ..progress import Stopwatch, Task, run

SAM_INPUT_SIZE = 1024
LOGIT_SIZE = 256
EMBEDDING_SHAPE = (256, 64, 64)
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class Geometry:
    """Where an ``H×W`` image sits inside SAM's square padded frame."""

    height: int
    width: int

    def resized(self, size: int) -> tuple[int, int]:
        """``(h, w)`` of the image inside a padded frame of side ``size``."""
        scale = size / max(self.height, self.width)
        return max(1, int(round(self.height * scale))), max(1, int(round(self.width * scale)))


def _as_rgb_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``H×W×3`` uint8 (numpy or torch) → ``1×3×H×W`` float32 on the 0-255 scale."""
    tensor = torch.as_tensor(np.ascontiguousarray(image) if isinstance(image, np.ndarray) else image)
    if tensor.ndim != 3 or tensor.shape[-1] != 3:
        raise ValueError(f"expected an H×W×3 RGB image, got shape {tuple(tensor.shape)}")
    return tensor.permute(2, 0, 1)[None].float()


def to_padded_frame(images: torch.Tensor, size: int, *, normalize: bool = True) -> torch.Tensor:
    """Resize ``B×3×H×W`` (0-255) so the long side is ``size``, normalise, pad to ``size²``."""
    geometry = Geometry(images.shape[-2], images.shape[-1])
    h, w = geometry.resized(size)
    out = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    if normalize:
        mean = torch.tensor(PIXEL_MEAN, device=out.device).view(1, 3, 1, 1)
        std = torch.tensor(PIXEL_STD, device=out.device).view(1, 3, 1, 1)
        out = (out - mean) / std
    return F.pad(out, (0, size - w, 0, size - h))


def prepare_image(image: np.ndarray | torch.Tensor, size: int = SAM_INPUT_SIZE) -> tuple[torch.Tensor, Geometry]:
    """One ``H×W×3`` uint8 image → ``1×3×size×size`` normalised tensor and its geometry."""
    tensor = _as_rgb_tensor(image)
    return to_padded_frame(tensor, size), Geometry(tensor.shape[-2], tensor.shape[-1])


def mask_to_padded_frame(
    mask: np.ndarray | torch.Tensor, size: int = LOGIT_SIZE, *, soft: bool = True
) -> torch.Tensor:
    """Binary ``H×W`` mask (anything > 0 is foreground) → ``1×size×size`` float32 in SAM's padded frame.

    Resampled centre-aligned, the way predictions come back
    (:func:`frame_to_original`): a reduction averages the area of the mask
    under each frame pixel, an enlargement interpolates bilinearly.  With
    ``soft`` (the default) each pixel holds that foreground fraction in
    [0, 1], a soft target that BCE and soft Dice take directly and that keeps
    sub-pixel boundaries; ``soft=False`` thresholds it at 0.5 for a hard 0/1
    mask.  (Sampling one source pixel per block, as legacy ``nearest`` does,
    would shift every object by ``(k - 1) / 2`` pixels for a ``k``-fold
    reduction.)  The padding is 0.
    """
    tensor = torch.as_tensor(np.asarray(mask) > 0 if not torch.is_tensor(mask) else mask > 0).float()
    height, width = tensor.shape[-2:]
    h, w = Geometry(height, width).resized(size)
    x = tensor.reshape(1, 1, height, width)
    if (h, w) == (height, width):
        out = x
    elif h <= height and w <= width:
        out = F.interpolate(x, size=(h, w), mode="area")
    else:
        out = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
    if not soft:
        out = (out >= 0.5).float()
    return F.pad(out, (0, size - w, 0, size - h))[0]


def frame_to_original(maps: torch.Tensor, geometry: Geometry, *, mode: str = "bilinear") -> torch.Tensor:
    """Map ``B×C×S×S`` maps in the padded frame (any S) back to ``B×C×H×W``.

    Crops away the padding at the map's own resolution, then resizes to the
    original size; the crop-first order saves memory for big originals.
    """
    size = maps.shape[-1]
    h, w = geometry.resized(size)
    cropped = maps[..., :h, :w].float()
    if (h, w) == (geometry.height, geometry.width):
        return cropped
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(cropped, size=(geometry.height, geometry.width), mode=mode, **kwargs)


def embed_images(
    sam,
    images: Sequence[np.ndarray],
    *,
    batch_size: int = 1,
    precision: Precision | str | None = None,
) -> Task[torch.Tensor]:
    """SAM image embeddings of ``N`` RGB uint8 images, as a generator.

    Yields ``Progress(phase="encode")`` after every batch and returns an
    ``N×256×64×64`` float32 tensor on the CPU (so embeddings of many images
    do not pile up on the GPU).  No gradients.  The encoder runs at
    ``precision`` (``auto``/``fp32``/``bf16`` or a resolved
    :class:`~napari_autosam.device.Precision`; default: the SAM's own
    setting, see :func:`~napari_autosam.device.set_precision`), and its
    attention goes through PyTorch's fused scaled-dot-product kernels
    (:mod:`.attention`).
    """
    from .attention import use_fast_attention
    from .encoder_compile import maybe_compile

    device = next(sam.parameters()).device
    if precision is None:
        chosen = module_precision(sam)
    elif isinstance(precision, Precision):
        chosen = precision
    else:
        chosen = resolve_precision(device, precision)
    use_fast_attention(sam)
    maybe_compile(sam)
    clock = Stopwatch(len(images))
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = [prepare_image(image)[0] for image in images[start : start + batch_size]]
        pixels = torch.cat(batch)
        if device.type == "cuda":
            pixels = pixels.pin_memory()  # page-locked, so the copy below overlaps the GPU's work
        pixels = pixels.to(device, non_blocking=True)
        with torch.inference_mode(), chosen.autocast():
            embedding = sam.image_encoder(pixels)
        if chosen.dtype is not None and not bool(torch.isfinite(embedding).all()):
            # float16 can overflow where float32 does not: this batch is redone in float32, and
            # the SAM keeps float32 from now on (the reason is kept on it for the caller to show).
            chosen = Precision(None, chosen.device_type, f"{chosen.name} gave non-finite embeddings: float32 instead")
            sam.autosam_precision, sam.autosam_precision_note = "fp32", chosen.reason
            with torch.inference_mode():
                embedding = sam.image_encoder(pixels)
        chunks.append(embedding.float().cpu())
        done = min(len(images), start + batch_size)
        yield clock.event("encode", done, f"encoded {done}/{len(images)} images")
    if not chunks:
        return torch.empty(0, *EMBEDDING_SHAPE)
    return torch.cat(chunks)


def image_embedding(sam, image: np.ndarray) -> torch.Tensor:
    """SAM embedding ``1×256×64×64`` (CPU, float32) of one RGB uint8 image."""
    return run(embed_images(sam, [image]))
