"""AutoSAM: a frozen SAM prompted by a learned dense prompt g(I), plus the surrogate h."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..sam.registry import freeze


@dataclass
class AutoSAMOutput:
    """What one forward pass gives, all in SAM's padded frame.

    sam_logits : B×1×256×256, the frozen mask decoder's logits
    h_logits : B×1×256×256 or None, the surrogate decoder's logits
    prompt : B×256×64×64, the dense prompt g(I)
    iou : B×1, the mask decoder's own prediction of its mask's IoU (None when not asked for)
    """

    sam_logits: torch.Tensor
    h_logits: torch.Tensor | None
    prompt: torch.Tensor
    iou: torch.Tensor | None = None


class AutoSAM(nn.Module):
    """Frozen SAM + prompt generator g + surrogate decoder h.

    Parameters
    ----------
    sam : segment_anything.modeling.Sam
        Frozen here (no gradients, eval mode) whatever its state on entry.
    prompt_generator : nn.Module
        ``B×3×S×S`` (image in the padded frame at ``S = input_size``,
        normalised with SAM's mean/std) → ``B×256×64×64`` dense prompt.
    surrogate : nn.Module or None
        ``B×256×64×64`` → ``B×1×256×256`` logits.
    """

    def __init__(self, sam: nn.Module, prompt_generator: nn.Module, surrogate: nn.Module | None = None) -> None:
        super().__init__()
        self.sam = freeze(sam)
        self.prompt_generator = prompt_generator
        self.surrogate = surrogate

    def train(self, mode: bool = True) -> AutoSAM:
        super().train(mode)
        self.sam.eval()  # SAM never leaves eval mode
        return self

    @property
    def input_size(self) -> int:
        return int(self.prompt_generator.input_size)

    @torch.no_grad()
    def encode(self, sam_input: torch.Tensor) -> torch.Tensor:
        """SAM image embedding ``B×256×64×64`` of ``B×3×1024×1024`` pre-processed images."""
        return self.sam.image_encoder(sam_input)

    def decode(self, image_embedding: torch.Tensor, dense_prompt: torch.Tensor) -> torch.Tensor:
        """Frozen mask decoder with an empty sparse prompt → ``B×1×256×256`` logits.

        Gradients flow back into ``dense_prompt``.  SAM's decoder repeats one
        image embedding for every prompt set, so images are decoded one by one.
        """
        return self.decode_with_iou(image_embedding, dense_prompt)[0]

    def decode_with_iou(self, image_embedding: torch.Tensor, dense_prompt: torch.Tensor):
        """:meth:`decode`, also returning the decoder's predicted IoU of each mask (``B×1``)."""
        pe = self.sam.prompt_encoder.get_dense_pe()
        empty = dense_prompt.new_zeros(1, 0, dense_prompt.shape[1])
        logits, ious = [], []
        for emb, dense in zip(image_embedding, dense_prompt):
            out, iou = self.sam.mask_decoder(
                image_embeddings=emb[None],
                image_pe=pe,
                sparse_prompt_embeddings=empty,
                dense_prompt_embeddings=dense[None],
                multimask_output=False,
            )
            logits.append(out)
            ious.append(iou)
        return torch.cat(logits), torch.cat(ious)

    def _decode_fast_with_iou(self, image_embedding: torch.Tensor, dense_prompt: torch.Tensor):
        from ..sam.fast_decoder import decode_prompts, fast_decoder_enabled

        if not fast_decoder_enabled():
            return self.decode_with_iou(image_embedding, dense_prompt)
        pe = self.sam.prompt_encoder.get_dense_pe()
        empty = dense_prompt.new_zeros(1, 0, dense_prompt.shape[1])
        out = [decode_prompts(self.sam.mask_decoder, emb[None], pe, empty, dense[None])
               for emb, dense in zip(image_embedding, dense_prompt)]
        return torch.cat([logits for logits, _ in out]), torch.cat([iou for _, iou in out])

    def forward(self, g_input: torch.Tensor, image_embedding: torch.Tensor, *, with_surrogate: bool = True) -> AutoSAMOutput:
        """Dense prompt from the image, SAM logits from the cached embedding, and h's logits.

        The decoder runs through :func:`~napari_autosam.sam.fast_decoder.decode_prompts`
        (the same logits and IoU as :meth:`decode_with_iou` to float rounding, the
        one mask computed only), unless ``NAPARI_AUTOSAM_FAST_DECODER=0``.
        """
        prompt = self.prompt_generator(g_input)
        sam_logits, iou = self._decode_fast_with_iou(image_embedding, prompt.to(image_embedding.dtype))
        h_logits = self.surrogate(prompt) if (with_surrogate and self.surrogate is not None) else None
        return AutoSAMOutput(sam_logits=sam_logits, h_logits=h_logits, prompt=prompt, iou=iou)
