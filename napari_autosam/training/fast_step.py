"""The forward half of a cached fine-tuning step of g, made cheaper without changing its result.

A training step of g with a cached SAM embedding costs g's forward and
backward and the frozen mask decoder's forward and backward (into the
prompt only).  :func:`g_prompt_and_logits` is what the step calls:

* the mask decoder runs through :func:`~napari_autosam.sam.fast_decoder.decode_dense`
  (batched, fused attention, the upsampling as matrix products, one mask
  token, no IoU head).

Both give the plain step's numbers to float rounding (a test compares the
loss and g's gradients, in float64 to 1e-10).  Measured and *not* used
(docs/training.md, "Speed figures"): ``torch.compile`` (minutes of
compilation on a CPU for ~1.2× per step), fused Adam (no difference at g's
size), g in ``channels_last`` layout (~6 % faster on the CPU, but its
float32 gradients were 2.5× further from a float64 computation).
"""

from __future__ import annotations

import torch

from ..sam.fast_decoder import decode_dense


def g_prompt_and_logits(model, g_input: torch.Tensor, embedding: torch.Tensor, *,
                        prompt_generator: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """g's dense prompt and SAM's logits for a training step.

    Parameters
    ----------
    model : AutoSAM
        Its ``prompt_generator`` and frozen ``sam`` are used.
    g_input : torch.Tensor
        ``B×3×S×S`` normalised images in the padded frame.
    embedding : torch.Tensor
        ``B×256×64×64`` cached SAM embeddings.
    prompt_generator : torch.nn.Module, optional
        What to call as g (e.g. g wrapped for distributed training); default
        ``model.prompt_generator``.

    Returns
    -------
    prompt : torch.Tensor
        ``B×256×64×64`` g(I), differentiable.
    logits : torch.Tensor
        ``B×1×256×256`` mask-decoder logits, differentiable with respect to ``prompt``.
    """
    prompt = (prompt_generator or model.prompt_generator)(g_input)
    return prompt, decode_dense(model.sam, embedding, prompt.to(embedding.dtype))
