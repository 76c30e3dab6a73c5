"""g's input transform: what the prompt generator sees of an RGB picture.

g reads images normalised with SAM's pixel mean and std (and zero-padded to
a square).  A model may turn that into a stain-aware input first, inside g,
so training, segmentation and evaluation all apply the same transform and a
checkpoint rebuilds it from its metadata (``prompt_generator.input_transform``):

* ``"rgb"``: unchanged (the paper; models saved before this option existed).
* ``"rgb_norm"``: each colour channel standardised per image (zero mean,
  unit variance over the picture's own pixels): Reinhard-style colour
  normalisation, so a paler or darker stain looks the same to g.
* ``"hed"``: optical density ``-log((I + 1) / 256)`` unmixed into
  haematoxylin, eosin and residual channels with scikit-image's H&E-DAB
  matrix (:data:`skimage.color.hed_from_rgb`), each standardised per image.
  Nuclei are the haematoxylin channel's high values whatever the staining
  batch's intensity.

The transforms have no parameters (the state dict is unchanged); padding
(all channels exactly zero after normalisation) is left at zero and does not
count in the statistics.
"""

from __future__ import annotations

import torch
from torch import nn

#: The input transforms g can be built with (see the module docstring).
INPUT_TRANSFORMS = ("rgb", "rgb_norm", "hed")
#: The transform of a model whose metadata names none.
LEGACY_INPUT_TRANSFORM = "rgb"


class InputTransform(nn.Module):
    """``B×3×S×S`` SAM-normalised pictures -> ``B×3×S×S`` input of g's encoder (see the module docstring)."""

    def __init__(self, name: str = "rgb") -> None:
        super().__init__()
        if name not in INPUT_TRANSFORMS:
            raise ValueError(f"unknown input transform {name!r}; valid: {', '.join(INPUT_TRANSFORMS)}")
        from skimage.color import hed_from_rgb

        from ..sam.embedding import PIXEL_MEAN, PIXEL_STD

        self.name = name
        self.register_buffer("mean", torch.tensor(PIXEL_MEAN, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(PIXEL_STD, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("unmix", torch.tensor(hed_from_rgb, dtype=torch.float32), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.name == "rgb":
            return x
        valid = (x != 0).any(dim=1, keepdim=True)
        x = x.float()
        if self.name == "hed":
            rgb = (x * self.std + self.mean).clamp(0, 255)
            od = -torch.log((rgb + 1.0) / 256.0)
            x = torch.einsum("bchw,cd->bdhw", od, self.unmix)
        return standardise(x, valid)


def standardise(x: torch.Tensor, valid: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Each channel of each image at zero mean and unit variance over its ``valid`` pixels; the rest 0."""
    weight = valid.to(x.dtype)
    count = weight.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
    mean = (x * weight).sum(dim=(2, 3), keepdim=True) / count
    var = ((x - mean) ** 2 * weight).sum(dim=(2, 3), keepdim=True) / count
    return (x - mean) / torch.sqrt(var + eps ** 2) * weight
