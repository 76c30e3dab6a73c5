"""Augmentations that keep g's input, SAM's cached embedding and the target mask aligned.

SAM's image encoder is frozen and expensive, so its embeddings are computed
once per image and cached.  An augmentation must then either be applied to
the image *before* encoding (and cached as its own variant), or be one the
cached embedding can follow cheaply.  Three kinds are used:

* **Geometric variants** (:data:`D4`): flips, 90° rotations and transposes
  of the original image.  Each variant is a different picture, so it gets
  its own exact SAM embedding from the content-keyed cache (one encoder run
  per image and variant, reused by later runs).  The training loop picks a
  random cached variant per sample and step.
* **Photometric jitter** (brightness, contrast, saturation, hue): applied
  to g's input only.  SAM's embedding is always that of the *unjittered*
  image, so SAM never sees a jittered picture: the jitter teaches g to find
  the same objects under colour changes, nothing more.
* **Affine warp** (rotation, scale, translation; off by default,
  ``affine_p = 0``): one random transform per item applied to g's input, to
  the 64×64 cached embedding (bilinear resampling of the feature grid) and
  to the target mask alike.  A warped embedding is *not* what SAM computes
  for a warped image (absolute position embeddings, a fixed window grid,
  16-pixel patches), so this is an approximate feature-level augmentation;
  the exact transforms are the D4 variants.

All three inputs live in SAM's square padded frame (at ``input_size``, 64 and
256), so one normalised affine matrix moves them consistently.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..sam.embedding import PIXEL_MEAN, PIXEL_STD

#: The eight symmetries of the square, applied to ``H×W[×C]`` arrays.
D4: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda a: a,
    "hflip": lambda a: a[:, ::-1],
    "vflip": lambda a: a[::-1],
    "rot90": lambda a: np.rot90(a, 1),
    "rot180": lambda a: np.rot90(a, 2),
    "rot270": lambda a: np.rot90(a, 3),
    "transpose": lambda a: np.swapaxes(a, 0, 1),
    "antitranspose": lambda a: np.rot90(np.swapaxes(a, 0, 1), 2),
}


def apply_d4(array: np.ndarray, variant: str) -> np.ndarray:
    """``array`` (``H×W`` or ``H×W×C``) under the named symmetry, as a contiguous copy."""
    try:
        transform = D4[variant]
    except KeyError:
        raise ValueError(f"unknown geometric variant {variant!r}; valid: {', '.join(D4)}") from None
    return np.ascontiguousarray(transform(array))


@dataclass(frozen=True)
class Augmentation:
    """Random augmentation of one training step (GlaS-style colour jitter, no affine warp, by default).

    Attributes
    ----------
    brightness, contrast, saturation : float
        Each factor is drawn from ``[1 - x, 1 + x]``.
    hue : float
        Hue shift drawn from ``[-hue, hue]`` turns of the colour wheel.
    affine_p : float
        Probability that an item gets a random affine transform (0: never;
        the warp of cached embeddings is approximate, see the module docstring).
    rotation : float
        Maximum rotation in degrees.
    scale : (float, float)
        Range of the zoom factor.
    translate : float
        Maximum shift as a fraction of the padded frame's side.
    """

    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.1
    affine_p: float = 0.0
    rotation: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.05

    @classmethod
    def none(cls) -> Augmentation:
        """No photometric or affine change (geometric variants still apply)."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, (1.0, 1.0), 0.0)

    def to_dict(self) -> dict:
        return asdict(self)


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return float(low + (high - low) * torch.rand((), generator=generator))


_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def color_jitter(image: torch.Tensor, aug: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast, saturation and hue of one ``3×H×W`` RGB image on the 0-255 scale.

    Returns a float ``3×H×W`` tensor clipped to 0-255.  Hue is a rotation of
    the chroma plane in YIQ space, which leaves luminance unchanged.
    """
    x = image.float()
    weights = _RGB_TO_YIQ[0].to(x)[:, None, None]
    if aug.brightness:
        x = x * _uniform(generator, 1 - aug.brightness, 1 + aug.brightness)
    if aug.contrast:
        mean = (weights * x).sum(0).mean()
        x = (x - mean) * _uniform(generator, 1 - aug.contrast, 1 + aug.contrast) + mean
    if aug.saturation:
        luma = (weights * x).sum(0, keepdim=True)
        x = (x - luma) * _uniform(generator, 1 - aug.saturation, 1 + aug.saturation) + luma
    if aug.hue:
        angle = 2 * math.pi * _uniform(generator, -aug.hue, aug.hue)
        cos, sin = math.cos(angle), math.sin(angle)
        rotate = torch.tensor([[1, 0, 0], [0, cos, -sin], [0, sin, cos]], dtype=x.dtype, device=x.device)
        yiq = _RGB_TO_YIQ.to(x)
        matrix = torch.linalg.inv(yiq) @ rotate @ yiq
        x = torch.einsum("ij,jhw->ihw", matrix, x)
    return x.clamp(0, 255)


def normalize_and_pad(image: torch.Tensor, size: int) -> torch.Tensor:
    """``3×h×w`` RGB (0-255, long side already ``size``) → ``3×size×size`` normalised, padded bottom/right.

    The same result as :func:`napari_autosam.sam.embedding.to_padded_frame`
    for an image already at its resized size: padding is 0 after
    normalisation, i.e. SAM's mean colour.
    """
    mean = torch.tensor(PIXEL_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD, device=image.device).view(3, 1, 1)
    x = (image.float() - mean) / std
    return F.pad(x, (0, size - x.shape[-1], 0, size - x.shape[-2]))


def random_affine(n: int, aug: Augmentation, generator: torch.Generator) -> torch.Tensor | None:
    """``n×2×3`` matrices for :func:`torch.nn.functional.affine_grid` (identity for items left alone).

    None when no item is transformed, so callers can skip the resampling.
    """
    if aug.affine_p <= 0:
        return None
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    moved = False
    for i in range(n):
        if float(torch.rand((), generator=generator)) >= aug.affine_p:
            continue
        moved = True
        angle = math.radians(_uniform(generator, -aug.rotation, aug.rotation))
        zoom = _uniform(generator, *aug.scale)
        # affine_grid maps output to input coordinates, hence the inverse zoom; frame is [-1, 1]².
        cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
        shift = [_uniform(generator, -2 * aug.translate, 2 * aug.translate) for _ in range(2)]
        theta[i] = torch.tensor([[cos, -sin, shift[0]], [sin, cos, shift[1]]])
    return theta if moved else None


def warp(x: torch.Tensor, theta: torch.Tensor, *, mode: str = "bilinear", padding_mode: str = "zeros") -> torch.Tensor:
    """Resample ``B×C×S×S`` maps with ``B×2×3`` affine matrices (normalised frame coordinates)."""
    theta = theta.to(device=x.device, dtype=torch.float32)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x.float(), grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    return out.to(x.dtype)
