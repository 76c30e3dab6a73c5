"""Samples turned into tensors once: g's inputs, SAM embeddings and targets per geometric variant.

Everything a training step needs is computed here before the first step, so
a step costs g, the mask decoder and h — never SAM's image encoder:

* ``images[i][v]``: sample ``i`` under variant ``v``, resized so its long
  side is ``input_size`` (``3×h×w`` uint8, not yet normalised or padded, so
  colour jitter can act on real pixels);
* ``embeddings[i][v]``: SAM's ``256×64×64`` embedding of that picture, from
  the content-keyed :class:`~napari_autosam.sam.cache.EmbeddingCache`;
* ``targets[i][v]``: the mask in SAM's padded frame at 256², soft: the
  foreground fraction under each logit pixel (uint8, 255 = all foreground),
  so the loss sees sub-pixel boundaries and no shift (see
  :func:`~napari_autosam.sam.embedding.mask_to_padded_frame`).

Memory: 4 MiB per embedding (float32), so 100 images × 2 variants ≈ 0.8 GB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..progress import CancelToken, Stopwatch, Task, nested
from ..sam.embedding import LOGIT_SIZE, Geometry, mask_to_padded_frame
from .augment import Augmentation, apply_d4, color_jitter, normalize_and_pad, random_affine, warp
from .class_stage import class_targets
from .data import Sample


def resize_long_side(image: np.ndarray, size: int) -> torch.Tensor:
    """``H×W×3`` uint8 → ``3×h×w`` uint8 with long side ``size`` (SAM's resize: bilinear, antialiased)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    h, w = Geometry(image.shape[0], image.shape[1]).resized(size)
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x[0].round().clamp(0, 255).to(torch.uint8)


def _soft_target(mask: np.ndarray) -> torch.Tensor:
    """``H×W`` bool → ``1×256×256`` uint8 foreground fraction (0-255) in SAM's padded frame."""
    return (mask_to_padded_frame(mask, LOGIT_SIZE) * 255).round().to(torch.uint8)


@dataclass
class PreparedSet:
    """Per-sample, per-variant tensors for training or validation (see the module docstring)."""

    samples: list[Sample]
    variants: tuple[str, ...]
    input_size: int
    images: list[list[torch.Tensor]]
    targets: list[list[torch.Tensor]]
    embeddings: list[list[torch.Tensor]]

    def __len__(self) -> int:
        return len(self.samples)

    def batch(
        self,
        indices: Sequence[int],
        variants: Sequence[int],
        *,
        device: torch.device,
        augment: Augmentation | None = None,
        generator: torch.Generator | None = None,
        with_embedding: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``(g_input B×3×S×S, embedding B×256×64×64 or None, target B×1×256×256)`` on ``device``.

        With ``augment``, each item gets colour jitter (g's input only) and
        maybe one affine transform shared by all three tensors.
        """
        g_input = []
        for i, v in zip(indices, variants):
            image = self.images[i][v]
            if augment is not None:
                image = color_jitter(image, augment, generator)
            g_input.append(normalize_and_pad(image, self.input_size))
        g_input = torch.stack(g_input)
        target = torch.stack([self.targets[i][v] for i, v in zip(indices, variants)]).float() / 255
        embedding = torch.stack([self.embeddings[i][v] for i, v in zip(indices, variants)]) if with_embedding else None
        theta = random_affine(len(indices), augment, generator) if augment is not None else None
        if theta is not None:
            g_input = warp(g_input, theta)
            target = warp(target, theta)
            if embedding is not None:
                # border: SAM's features just outside the frame resemble those at its edge, not zeros
                embedding = warp(embedding, theta, padding_mode="border")
        move = {"device": device, "non_blocking": True}
        return g_input.to(**move), embedding.to(**move) if embedding is not None else None, target.to(**move)


def prepare(
    samples: Sequence[Sample],
    variants: Sequence[str],
    *,
    cache,
    input_size: int,
    clock: Stopwatch,
    done: int = 0,
    cancel: CancelToken | None = None,
    num_classes: int | None = None,
) -> Task[PreparedSet | None]:
    """Build a :class:`PreparedSet`, encoding with SAM only what ``cache`` does not hold yet.

    Yields ``Progress(phase="encode")`` after each picture (``clock`` and
    ``done`` let train and validation sets share one bar).  Returns None
    when cancelled.  With ``num_classes`` K the masks hold class ids and
    each target is ``K×256×256`` (one soft fraction per class).
    """
    images, targets, embeddings = [], [], []
    for sample in samples:
        row_images, row_targets, row_embeddings = [], [], []
        for variant in variants:
            if cancel is not None and cancel.cancelled:
                return None
            picture = apply_d4(sample.image, variant)
            row_embeddings.append((yield from nested(cache.embed_many([picture])))[0])
            row_images.append(resize_long_side(picture, input_size))
            mask = apply_d4(sample.mask, variant)
            row_targets.append(_soft_target(mask) if num_classes is None else class_targets(mask, num_classes))
            done += 1
            yield clock.event("encode", done, f"SAM embeddings: {done}/{clock.total} ({sample.name}, {variant})")
        images.append(row_images)
        targets.append(row_targets)
        embeddings.append(row_embeddings)
    return PreparedSet(list(samples), tuple(variants), input_size, images, targets, embeddings)
