"""AutoSAM on a window of neighbouring slices, through the depth-adapted encoder (one home for training and segmenting).

For a window of ``D`` slices with ``C_in`` channels each::

    channels  D×C_in×H×W  (0-255 floats)
    rgb       D×3×H×W     modality adapter (identity for RGB stacks)
    pixels    D×3×1024²   SAM's resize, normalisation, padding
    embedding D×256×64×64 SAM's encoder with the depth adapters (sam.adapters.adapted_encode)
    g_input   D×3×S×S     the same rgb at g's input size S
    prompt    D×256×64×64 g(rgb), one dense prompt per slice
    logits    D×1×256×256 SAM's frozen mask decoder; h(prompt) the same shape
"""

from __future__ import annotations

import torch

from ..sam.adapters import DepthAdapters, adapted_encode
from ..sam.embedding import SAM_INPUT_SIZE, to_padded_frame
from .autosam import AutoSAM, AutoSAMOutput


def depth_forward(model: AutoSAM, adapters: DepthAdapters, channels: torch.Tensor, *,
                  with_surrogate: bool = True, detach_prompt_for_h: bool = False) -> tuple[AutoSAMOutput, torch.Tensor]:
    """One window (or ``B`` windows, slice-major) through modality adapter, adapted encoder, g, SAM's decoder and h.

    Parameters
    ----------
    channels : ``(B·D)×C_in×H×W`` float, 0-255 scale, on the model's device
    detach_prompt_for_h : h reads ``prompt.detach()`` (h's loss then does not move g)

    Returns
    -------
    output : AutoSAMOutput with ``sam_logits``, ``h_logits`` ``(B·D)×1×256×256``, ``prompt``, ``iou``
    embedding : ``(B·D)×256×64×64``, the adapted SAM embedding
    """
    rgb = adapters.to_rgb(channels.float())
    embedding = adapted_encode(model.sam, adapters, to_padded_frame(rgb, SAM_INPUT_SIZE))
    prompt = model.prompt_generator(to_padded_frame(rgb, model.input_size))
    sam_logits, iou = model.decode_with_iou(embedding, prompt.to(embedding.dtype))
    h_logits = None
    if with_surrogate and model.surrogate is not None:
        h_logits = model.surrogate(prompt.detach() if detach_prompt_for_h else prompt)
    return AutoSAMOutput(sam_logits=sam_logits, h_logits=h_logits, prompt=prompt, iou=iou), embedding
