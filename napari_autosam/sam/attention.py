"""SAM's image-encoder attention through PyTorch's fused ``scaled_dot_product_attention``.

segment-anything's ``Attention`` forms the full ``(H·W)²`` attention matrix,
adds the decomposed relative-position bias to it, applies a softmax and
multiplies by the values: three passes over the largest tensor of the
encoder.  Here the same bias (``rel_h[..., :, None] + rel_w[..., None, :]``,
from segment-anything's own ``get_rel_pos``) is handed to
:func:`torch.nn.functional.scaled_dot_product_attention` as an additive
mask, so PyTorch picks a fused kernel (flash / memory-efficient on CUDA,
the flash kernel on CPUs) for the product, softmax and second product.

A global-attention block of ViT-B at 1024² has 4096 tokens, so its full
bias would be ``heads × 4096²`` floats (805 MB for ViT-B's 12 heads, per
image).  Without gradients the queries are taken in row chunks instead and
each chunk's bias is written into one reused buffer of about
:data:`BIAS_BUDGET_BYTES` (:data:`GPU_BIAS_BUDGET_BYTES` on a GPU; the keys
and values are whole, so every chunk is exact).  With gradients (the depth
adapters train inside the encoder) the whole bias is formed, which autograd
needs.  The bias terms are made contiguous before they are summed
(:func:`relative_position_terms`), which the sum itself gains from.
Measured on the 2-core CPU, ViT-B at 1024² in fresh processes: encoder
6.5 s and 2.7 GB peak before both changes, 5.6 s and 1.9 GB with the
contiguous terms and the whole bias, 5.4 s and 1.3 GB chunked.

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


#: About how many bytes of relative-position bias one chunk of queries may hold (no-gradient path):
#: small on a CPU, where a chunk that stays in cache is the point; larger on a GPU, where fewer,
#: larger kernel calls keep it busy (not yet measured on one).
BIAS_BUDGET_BYTES = 64 * 2**20
GPU_BIAS_BUDGET_BYTES = 512 * 2**20


def relative_position_terms(module: Attention, q: torch.Tensor,
                            size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The two factors of the decomposed relative-position bias, one row per query.

    Returns ``rel_h`` (``B×heads×(H·W)×H``) and ``rel_w`` (``B×heads×(H·W)×W``)
    in ``q``'s dtype: the bias of query ``i`` and key ``(kh, kw)`` is
    ``rel_h[..., i, kh] + rel_w[..., i, kw]``.
    """
    height, width = size
    b, heads, _, channels = q.shape
    rel_h_table = get_rel_pos(height, height, module.rel_pos_h).to(q.dtype)
    rel_w_table = get_rel_pos(width, width, module.rel_pos_w).to(q.dtype)
    r_q = q.reshape(b * heads, height, width, channels)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, rel_h_table)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, rel_w_table)
    return (rel_h.reshape(b, heads, height * width, height),
            rel_w.reshape(b, heads, height * width, width))


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
    rel_h, rel_w = relative_position_terms(module, q, size)
    b, heads, tokens, _ = rel_h.shape
    return (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, heads, tokens, tokens)


def chunk_rows(batch: int, heads: int, tokens: int, element_size: int,
               budget: int = BIAS_BUDGET_BYTES) -> int:
    """Query rows per chunk so that one chunk's bias (``batch×heads×rows×tokens``) stays near ``budget``."""
    per_row = batch * heads * tokens * element_size
    return max(1, min(tokens, budget // max(per_row, 1)))


def _chunked_attention(q, k, v, rel_h, rel_w, scale: float, rows: int) -> torch.Tensor:
    """SDPA over query chunks, each chunk's bias written into one reused buffer (no autograd)."""
    b, heads, tokens, _ = q.shape
    height, width = rel_h.shape[-1], rel_w.shape[-1]
    out = torch.empty(b, heads, tokens, v.shape[-1], dtype=q.dtype, device=q.device)
    buffer = torch.empty(b, heads, rows, height, width, dtype=q.dtype, device=q.device)
    for start in range(0, tokens, rows):
        n = min(rows, tokens - start)
        bias = buffer[:, :, :n]
        torch.add(rel_h[:, :, start:start + n, :, None], rel_w[:, :, start:start + n, None, :], out=bias)
        out[:, :, start:start + n] = F.scaled_dot_product_attention(
            q[:, :, start:start + n], k, v, attn_mask=bias.view(b, heads, n, tokens), scale=scale)
    return out


def _sdpa_forward(self: Attention, x: torch.Tensor) -> torch.Tensor:
    """``B×H×W×dim`` → ``B×H×W×dim``, as ``Attention.forward`` but through the fused kernel."""
    b, height, width, _ = x.shape
    qkv = self.qkv(x).reshape(b, height * width, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # each B×heads×(H·W)×C
    tokens = height * width
    if not self.use_rel_pos:
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
    else:
        budget = BIAS_BUDGET_BYTES if q.device.type == "cpu" else GPU_BIAS_BUDGET_BYTES
        rows = chunk_rows(b, self.num_heads, tokens, q.element_size(), budget)
        if rows < tokens and not (torch.is_grad_enabled() and q.requires_grad):
            rel_h, rel_w = relative_position_terms(self, q, (height, width))
            out = _chunked_attention(q, k, v, rel_h, rel_w, self.scale, rows)
        else:
            bias = relative_position_bias(self, q, (height, width))
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
