"""A faster forward of SAM's frozen mask decoder for AutoSAM's prompt: a dense prompt and no points.

AutoSAM calls segment-anything's ``MaskDecoder`` with an empty sparse prompt
and ``multimask_output=False``.  For that call the stock forward does work
whose result is thrown away or is the same every time: it rebuilds the
image positional encoding, copies the image embedding once per prompt set
(so a batch has to be decoded image by image), upsamples through two
transposed convolutions and a hand-written channel LayerNorm in ``NCHW``,
and computes four masks and four IoU scores to keep one mask.

:func:`decode_dense` gives the same logits (to float rounding) from the same
weights, batched over images:

* the positional encoding and the output tokens are taken once per call
  (they are constants of the frozen decoder), not repeated per image;
* the transformer's attention runs through
  :func:`torch.nn.functional.scaled_dot_product_attention`
  (:func:`fused_decoder_attention`, only during the call);
* the two 2×2 stride-2 transposed convolutions are matrix products on the
  transformer's ``tokens × channels`` output, with the LayerNorm over the
  last axis (one fused kernel), and the sub-pixel layout is unfolded only
  for the final one-channel mask;
* only the first mask token's hypernetwork is run and no IoU head.

Gradients flow into the dense prompt exactly as through the stock forward;
the decoder's weights stay frozen.  ``NAPARI_AUTOSAM_FAST_DECODER=0`` makes
:func:`decode_dense` call the stock forward image by image instead.
"""

from __future__ import annotations

import contextlib
import os
import types

import torch
import torch.nn.functional as F
from segment_anything.modeling.transformer import Attention as DecoderAttention

#: Environment variable: "0" keeps segment-anything's own mask-decoder forward.
FAST_DECODER_ENV = "NAPARI_AUTOSAM_FAST_DECODER"


def _sdpa_forward(self: DecoderAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``B×Nq×C, B×Nk×C, B×Nk×C → B×Nq×C``, as the stock forward but through the fused kernel."""
    q = self._separate_heads(self.q_proj(q), self.num_heads)
    k = self._separate_heads(self.k_proj(k), self.num_heads)
    v = self._separate_heads(self.v_proj(v), self.num_heads)
    batch = max(q.shape[0], k.shape[0])  # one image's tokens against B prompt sets: expanded views, not
    if q.shape[0] != k.shape[0]:         # broadcasting, which sends the kernel down its slow path
        q, k, v = q.expand(batch, -1, -1, -1), k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)
    return self.out_proj(self._recombine_heads(F.scaled_dot_product_attention(q, k, v)))


def fused_decoder_attention(sam):
    """Within the block, the mask decoder's attention layers run through the fused kernel.

    The ``forward`` of each of them is rebound on entry and given back on
    exit (weights untouched), so the SAM other code sees is unchanged; the
    backward of a forward taken inside the block still uses the fused
    kernel's own gradient.
    """
    return fused_decoder_attention_of(sam.mask_decoder)


@contextlib.contextmanager
def fused_decoder_attention_of(decoder):
    """:func:`fused_decoder_attention` for a ``MaskDecoder`` itself."""
    rebound = [m for m in decoder.modules()
               if isinstance(m, DecoderAttention) and m.__dict__.get("forward") is None]
    for module in rebound:
        module.forward = types.MethodType(_sdpa_forward, module)
    try:
        yield
    finally:
        for module in rebound:
            module.__dict__.pop("forward", None)


def fast_decoder_enabled() -> bool:
    """Whether :func:`decode_dense` takes the fast path (``NAPARI_AUTOSAM_FAST_DECODER`` is not "0")."""
    return os.environ.get(FAST_DECODER_ENV, "1").strip() != "0"


def _transposed_conv_2x2(x: torch.Tensor, conv: torch.nn.ConvTranspose2d) -> torch.Tensor:
    """A 2×2 stride-2 ``ConvTranspose2d`` on ``…×C`` vectors → ``…×2×2×C_out`` (sub-pixel row, column, channel)."""
    weight = conv.weight  # C×C_out×2×2
    c_in, c_out = weight.shape[:2]
    matrix = weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_out)
    bias = conv.bias.repeat(4) if conv.bias is not None else None
    out = F.linear(x, matrix.t(), bias)
    return out.unflatten(-1, (2, 2, c_out))


def _upscaled_mask(decoder, src: torch.Tensor, hyper: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``output_upscaling`` then the hypernetwork product, in token layout.

    src : ``B×(h·w)×256`` transformer output; hyper : ``B×32`` (one mask) or
    ``B×K×32``; returns ``B×1×4h×4w`` or ``B×K×4h×4w``.
    """
    up1, norm, act1, up2, act2 = decoder.output_upscaling
    h, w = size
    b = src.shape[0]
    hyper = hyper[:, None, :] if hyper.ndim == 2 else hyper
    k = hyper.shape[1]
    x = _transposed_conv_2x2(src, up1)  # B×hw×2×2×64
    x = act1(F.layer_norm(x, (x.shape[-1],), norm.weight, norm.bias, norm.eps))
    x = act2(_transposed_conv_2x2(x, up2))  # B×hw×2×2×2×2×32
    masks = (x.flatten(1, -2) @ hyper.transpose(1, 2)).view(b, h, w, 2, 2, 2, 2, k)  # i, j, a, b, c, d, mask
    # row = 4i + 2a + c, column = 4j + 2b + d
    return masks.permute(0, 7, 1, 3, 5, 2, 4, 6).reshape(b, k, 4 * h, 4 * w)


def _token_major(x: torch.Tensor) -> torch.Tensor:
    """``B×C×H×W`` stored as ``B×H×W×C`` (channels last), so the transformer's token view of it is contiguous.

    The transformer reads the image as ``x.flatten(2).permute(0, 2, 1)``; in the
    default layout every projection of that view first copies it.
    """
    return x.contiguous(memory_format=torch.channels_last)


def decode_dense(sam, image_embedding: torch.Tensor, dense_prompt: torch.Tensor) -> torch.Tensor:
    """SAM's mask logits for dense prompts and no sparse prompt, batched over images.

    Parameters
    ----------
    sam : segment_anything.modeling.Sam
        Its prompt encoder's positional encoding and its mask decoder are used.
    image_embedding : torch.Tensor
        ``B×256×64×64`` image embeddings.
    dense_prompt : torch.Tensor
        ``B×256×64×64`` dense prompts (gradients flow back into them).

    Returns
    -------
    torch.Tensor
        ``B×1×256×256`` logits, equal to the stock decoder's single-mask
        output (``multimask_output=False``) to float rounding.
    """
    decoder = sam.mask_decoder
    if not fast_decoder_enabled():
        return _decode_stock(sam, image_embedding, dense_prompt)
    b, _, h, w = image_embedding.shape
    pe = sam.prompt_encoder.get_dense_pe().to(image_embedding.dtype)
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = tokens.to(dense_prompt.dtype).unsqueeze(0).expand(b, -1, -1)
    with fused_decoder_attention(sam):
        hs, src = decoder.transformer(_token_major(image_embedding + dense_prompt), pe, tokens)
    hyper = decoder.output_hypernetworks_mlps[0](hs[:, 1, :])  # first mask token: the single-mask output
    return _upscaled_mask(decoder, src, hyper, (h, w))


def _upscaled_mask_in(decoder, src: torch.Tensor, hyper: torch.Tensor, size: tuple[int, int],
                      regions: torch.Tensor) -> torch.Tensor:
    """:func:`_upscaled_mask` computed only inside one region of tokens per prompt set.

    ``regions`` is ``B×4`` ``(y0, y1, x0, x1)`` in tokens (the ``h×w`` grid);
    every set gets a crop of the batch's largest region size, moved inside
    the grid.  Each mask pixel depends on one token only (2×2 stride-2
    transposed convolutions, per-pixel norm and activations), so the
    pixels of the crop equal the whole map's; the rest of the returned
    ``B×K×4h×4w`` map is NaN.
    """
    h, w = size
    b, _, c = src.shape
    grid = src.reshape(b, h, w, c)
    height = int((regions[:, 1] - regions[:, 0]).max().clamp(1, h))
    width = int((regions[:, 3] - regions[:, 2]).max().clamp(1, w))
    top = regions[:, 0].clamp(0, h - height).tolist()
    left = regions[:, 2].clamp(0, w - width).tolist()
    crops = torch.stack([grid[i, y:y + height, x:x + width] for i, (y, x) in enumerate(zip(top, left))])
    masks = _upscaled_mask(decoder, crops.reshape(b, height * width, c), hyper, (height, width))
    out = masks.new_full((b, masks.shape[1], 4 * h, 4 * w), float("nan"))
    for i, (y, x) in enumerate(zip(top, left)):
        out[i, :, 4 * y:4 * (y + height), 4 * x:4 * (x + width)] = masks[i]
    return out


def decode_prompts(decoder, image_embedding: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                   dense: torch.Tensor, *, multimask: bool = False,
                   regions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``MaskDecoder.forward`` for ``B`` prompt sets on one image, computing only the masks it returns.

    Takes and returns what segment-anything's ``MaskDecoder`` does
    (``image_embedding`` ``1×256×64×64``, ``image_pe`` ``1×256×64×64``,
    ``sparse`` ``B×N×256``, ``dense`` ``B×256×64×64``): logits
    ``B×K×256×256`` and predicted IoU ``B×K``, ``K`` = 1, or 3 with
    ``multimask``, equal to the stock forward to float rounding.  The
    embedding is broadcast instead of copied per prompt set, the attention
    is fused, the upsampling is done as in :func:`decode_dense`, and only
    the hypernetworks of the returned masks run (all four mask tokens still
    take part in the transformer, as in the stock forward).

    ``regions`` (``B×4`` ``(y0, y1, x0, x1)`` in the ``256×256`` logits'
    pixels, optional): the logits are needed only there, so the upsampling
    runs only on the tokens under them (:func:`_upscaled_mask_in`); the
    logits outside are NaN.
    """
    b = sparse.shape[0]
    tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0).to(sparse.dtype)
    tokens = torch.cat([tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
    _, _, h, w = image_embedding.shape
    if dense.shape[0] == 1 or dense.stride(0) == 0:
        # One dense prompt for every set (SAM's "no mask" or AutoSAM's g(I)): the image tokens
        # enter the transformer once and broadcast against the B prompt sets (the attention
        # broadcasts), so its first layer's projections of them are computed once, not B times.
        dense = dense[:1]
    with fused_decoder_attention_of(decoder):
        hs, src = decoder.transformer(_token_major(image_embedding + dense), image_pe, tokens)  # src: B×hw×C
    chosen = range(1, decoder.num_mask_tokens) if multimask else range(0, 1)
    hyper = torch.stack([decoder.output_hypernetworks_mlps[i](hs[:, 1 + i, :]) for i in chosen], dim=1)
    scores = decoder.iou_prediction_head(hs[:, 0, :])[:, chosen.start:chosen.stop]
    if regions is None:
        return _upscaled_mask(decoder, src, hyper, (h, w)), scores
    regions = torch.as_tensor(regions, dtype=torch.long)
    tokens_needed = torch.stack([regions[:, 0] // 4, -(-regions[:, 1] // 4), regions[:, 2] // 4, -(-regions[:, 3] // 4)], 1)
    return _upscaled_mask_in(decoder, src, hyper, (h, w), tokens_needed), scores


def _decode_stock(sam, image_embedding: torch.Tensor, dense_prompt: torch.Tensor) -> torch.Tensor:
    """The stock decoder, image by image (what :func:`decode_dense` equals)."""
    pe = sam.prompt_encoder.get_dense_pe()
    empty = dense_prompt.new_zeros(1, 0, dense_prompt.shape[1])
    out = [sam.mask_decoder(image_embeddings=emb[None], image_pe=pe, sparse_prompt_embeddings=empty,
                            dense_prompt_embeddings=dense[None], multimask_output=False)[0]
           for emb, dense in zip(image_embedding, dense_prompt)]
    return torch.cat(out)
