"""SAM's image-encoder attention through PyTorch's fused ``scaled_dot_product_attention``.

segment-anything's ``Attention`` forms the full ``(H·W)²`` attention matrix,
adds the decomposed relative-position bias to it, applies a softmax and
multiplies by the values: three passes over the largest tensor of the
encoder.  Here the same bias (``rel_h[..., :, None] + rel_w[..., None, :]``,
from segment-anything's own ``get_rel_pos``) is handed to
:func:`torch.nn.functional.scaled_dot_product_attention` as an additive
mask, so PyTorch picks a fused kernel (flash / memory-efficient on CUDA,
the flash kernel on CPUs) for the product, softmax and second product.

Nothing is forked: :func:`use_fast_attention` rebinds the ``forward`` of
each ``Attention`` module of a loaded SAM; the weights and the state dict
are untouched, and :func:`use_stock_attention` undoes it.  The output equals
the stock one to float rounding (a test checks ~1e-5 relative in float32).
Set ``NAPARI_AUTOSAM_SDPA=0`` to keep the stock attention.
"""

from __future__ import annotations

import os
import types

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention, get_rel_pos

#: Environment variable: "0" keeps segment-anything's own attention.
SDPA_ENV = "NAPARI_AUTOSAM_SDPA"


def relative_position_bias(module: Attention, q: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The decomposed relative-position bias of one attention call, as an additive mask.

    Parameters
    ----------
    module : the ``Attention`` whose ``rel_pos_h`` / ``rel_pos_w`` are used.
    q : ``B×heads×(H·W)×C`` queries (unscaled, as segment-anything uses them).
    size : ``(H, W)`` of the token grid.

    Returns
    -------
    ``B×heads×(H·W)×(H·W)`` tensor in ``q``'s dtype.
    """
    height, width = size
    b, heads, _, channels = q.shape
    rel_h_table = get_rel_pos(height, height, module.rel_pos_h).to(q.dtype)
    rel_w_table = get_rel_pos(width, width, module.rel_pos_w).to(q.dtype)
    r_q = q.reshape(b * heads, height, width, channels)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, rel_h_table)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, rel_w_table)
    bias = rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
    return bias.reshape(b, heads, height * width, height * width)


def _sdpa_forward(self: Attention, x: torch.Tensor) -> torch.Tensor:
    """``B×H×W×dim`` → ``B×H×W×dim``, as ``Attention.forward`` but through the fused kernel."""
    b, height, width, _ = x.shape
    qkv = self.qkv(x).reshape(b, height * width, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # each B×heads×(H·W)×C
    bias = relative_position_bias(self, q, (height, width)) if self.use_rel_pos else None
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
    out = out.view(b, self.num_heads, height, width, -1).permute(0, 2, 3, 1, 4).reshape(b, height, width, -1)
    return self.proj(out)


def _attention_modules(sam) -> list[Attention]:
    return [m for m in sam.image_encoder.modules() if isinstance(m, Attention)]


def use_fast_attention(sam, enabled: bool | None = None) -> bool:
    """Route every encoder attention of ``sam`` through the fused kernel (idempotent).

    ``enabled=None`` follows ``NAPARI_AUTOSAM_SDPA`` (on unless it is "0").
    Returns whether the fused attention is now in use.
    """
    if enabled is None:
        enabled = os.environ.get(SDPA_ENV, "1").strip() != "0"
    if not enabled:
        use_stock_attention(sam)
        return False
    for module in _attention_modules(sam):
        if module.__dict__.get("forward") is None:
            module.forward = types.MethodType(_sdpa_forward, module)
    return True


def use_stock_attention(sam) -> None:
    """Give every encoder attention of ``sam`` segment-anything's own forward back."""
    for module in _attention_modules(sam):
        module.__dict__.pop("forward", None)


def uses_fast_attention(sam) -> bool:
    """Whether the encoder's attention modules run through :func:`use_fast_attention`'s forward."""
    modules = _attention_modules(sam)
    return bool(modules) and all(module.__dict__.get("forward") is not None for module in modules)
