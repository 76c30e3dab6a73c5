"""The surrogate decoder h of AutoSAM: a dense prompt embedding -> mask logits.

``h(g(I))`` reads the prompt generator's output directly, without SAM, to
show what g has learnt and as a light alternative to SAM's mask decoder
(docs/method.md). It is trained with g frozen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of an NCHW tensor, with a per-channel affine.

    Maps ``BxCxHxW`` to ``BxCxHxW``; every pixel is normalised over its ``C``
    values independently.
    """

    def __init__(self, channels: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torch's fused layer_norm over the channel axis (moved last): the same numbers as normalising by hand with
        # the per-pixel mean and biased variance, in one kernel instead of a dozen elementwise passes and their
        # backward (a third of h's training step on a CPU was these passes)
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class SurrogateDecoder(nn.Module):
    """h: ``Bx256x64x64`` prompt embeddings -> ``Bx1x256x256`` mask logits.

    ConvTranspose2d(256 -> 64, k3, s2, p1, output padding 1) to 128x128,
    LayerNorm2d, GELU, ConvTranspose2d(64 -> 16, k2, s2) to 256x256,
    LayerNorm2d, GELU, 1x1 conv 16 -> 1. About 152 k parameters.

    Parameters
    ----------
    embed_dim : int
        Channels of the input embedding (SAM's 256).
    hidden_channels : tuple of 2 int
        Widths after the first and the second upsampling.
    """

    def __init__(self, *, embed_dim: int = 256, hidden_channels: tuple[int, int] = (64, 16)) -> None:
        super().__init__()
        c1, c2 = hidden_channels
        self.embed_dim = embed_dim
        self.hidden_channels = (int(c1), int(c2))
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(embed_dim, c1, kernel_size=3, stride=2, padding=1, output_padding=1),
            LayerNorm2d(c1),
            nn.GELU(),
            nn.ConvTranspose2d(c1, c2, kernel_size=2, stride=2),
            LayerNorm2d(c2),
            nn.GELU(),
            nn.Conv2d(c2, 1, kernel_size=1),
        )

    @property
    def config(self) -> dict:
        """JSON-serialisable keyword arguments that rebuild this decoder."""
        return {"embed_dim": self.embed_dim, "hidden_channels": list(self.hidden_channels)}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Decode embeddings to mask logits.

        Parameters
        ----------
        z : torch.Tensor
            ``Bx256x64x64`` prompt embeddings (any ``hxw`` works: output is ``4h x 4w``).

        Returns
        -------
        torch.Tensor
            ``Bx1x256x256`` logits (sigmoid gives the foreground probability).
        """
        if z.ndim != 4 or z.shape[1] != self.embed_dim:
            raise ValueError(f"SurrogateDecoder expects Bx{self.embed_dim}xHxW, got shape {tuple(z.shape)}")
        return self.layers(z)
