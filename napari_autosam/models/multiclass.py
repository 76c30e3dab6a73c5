"""The multi-class path of AutoSAM: K dense prompts, K binary masks from the frozen SAM, one fused label map.

A class model adds three small modules (:class:`ClassHeads`) to the binary
g and h of today, which stay as they are:

* :class:`ClassPromptHead` turns g's dense prompt ``B×256×64×64`` into one
  prompt per class, ``B×K×256×64×64`` (a 1×1 convolution per class, added
  to g's prompt, so at the start every class sees g's own prompt);
* SAM's frozen mask decoder reads the K prompts of an image in one call
  (batched as K prompt sets on one image embedding) and gives K binary
  logit maps ``B×K×256×256``;
* :class:`MultiClassAdapter` fuses those K logits and a background channel
  into ``K+1`` label logits (two 3×3 convolutions with a residual; softmax
  over the K+1 channels gives the class probabilities).  h has its own
  adapter: h runs on each class prompt and its K logits are fused the same
  way, so ``h(g(I))`` gives ``K+1`` channels too.

One class is the binary model of today: no heads, no ``"classes"`` metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: Channels of SAM's dense prompt.
EMBED_DIM = 256
#: Width of the adapter's hidden layer.
ADAPTER_HIDDEN = 16


class ClassPromptHead(nn.Module):
    """g's dense prompt ``B×256×64×64`` → one prompt per class ``B×K×256×64×64``.

    ``prompt_k = z + tanh(W_k z + b_k)`` with ``W_k`` a 1×1 convolution;
    ``W`` starts small, so the classes start from g's own prompt and part
    as each class's loss pulls its convolution its own way.
    """

    def __init__(self, num_classes: int, embed_dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.embed_dim = int(embed_dim)
        self.conv = nn.Conv2d(embed_dim, embed_dim * self.num_classes, kernel_size=1)
        nn.init.normal_(self.conv.weight, std=0.02 / embed_dim ** 0.5)
        nn.init.normal_(self.conv.bias, std=0.1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, c, h, w = z.shape
        delta = torch.tanh(self.conv(z)).view(b, self.num_classes, c, h, w)
        return z[:, None] + delta


class MultiClassAdapter(nn.Module):
    """K binary logit maps ``B×K×H×W`` → ``B×(K+1)×H×W`` label logits (channel 0 background).

    The input is the K logits after a background channel of zeros; two 3×3
    convolutions (GELU between) add a correction to it.  The second starts
    at zero, so an untrained adapter gives "the class with the largest
    positive logit, else background".
    """

    def __init__(self, num_classes: int, hidden: int = ADAPTER_HIDDEN) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        k1 = self.num_classes + 1
        self.conv1 = nn.Conv2d(k1, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, k1, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 4 or logits.shape[1] != self.num_classes:
            raise ValueError(f"MultiClassAdapter expects B×{self.num_classes}×H×W logits, got {tuple(logits.shape)}")
        x = torch.cat([logits.new_zeros(logits[:, :1].shape), logits], dim=1)
        return x + self.conv2(F.gelu(self.conv1(x)))


class ClassHeads(nn.Module):
    """The trained parts a class model adds: ``prompt`` (with g), ``adapter`` (SAM side), ``h_adapter`` (with h)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if not 2 <= int(num_classes) <= 64:
            raise ValueError(f"a class model has 2 to 64 classes, got {num_classes!r} (one class is the binary model)")
        self.num_classes = int(num_classes)
        self.prompt = ClassPromptHead(self.num_classes)
        self.adapter = MultiClassAdapter(self.num_classes)
        self.h_adapter = MultiClassAdapter(self.num_classes)

    def g_modules(self) -> list[nn.Module]:
        """What trains with g (stage 1)."""
        return [self.prompt, self.adapter]

    def h_modules(self) -> list[nn.Module]:
        """What trains with h (stage 2)."""
        return [self.h_adapter]


@dataclass
class ClassOutput:
    """One forward pass of a class model, in SAM's padded frame (logit size 256).

    sam_logits : B×K×256×256 binary logits of SAM per class (None when SAM was skipped)
    fused : B×(K+1)×256×256 label logits from the adapter (softmax: class probabilities)
    h_logits : B×K×256×256 binary logits of h per class (None without h)
    h_fused : B×(K+1)×256×256 h's label logits (None without h)
    prompts : B×K×256×64×64 the class prompts
    """

    sam_logits: torch.Tensor | None
    fused: torch.Tensor | None
    h_logits: torch.Tensor | None
    h_fused: torch.Tensor | None
    prompts: torch.Tensor


def class_prompts(model, heads: ClassHeads, g_input: torch.Tensor) -> torch.Tensor:
    """``B×K×256×64×64`` class prompts of a ``B×3×S×S`` batch (g, then the prompt head)."""
    return heads.prompt(model.prompt_generator(g_input))


def decode_classes(model, image_embedding: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """SAM's frozen mask decoder on K prompts per image → ``B×K×256×256`` logits.

    Each image's K prompts are one decoder call (K prompt sets on one
    embedding, the way SAM batches prompts); gradients reach the prompts.
    """
    sam = model.sam
    pe = sam.prompt_encoder.get_dense_pe()
    k = prompts.shape[1]
    empty = prompts.new_zeros(k, 0, prompts.shape[2])
    out = []
    for emb, dense in zip(image_embedding, prompts):
        logits, _ = sam.mask_decoder(image_embeddings=emb[None], image_pe=pe, sparse_prompt_embeddings=empty,
                                     dense_prompt_embeddings=dense.to(emb.dtype), multimask_output=False)
        out.append(logits[:, 0])
    return torch.stack(out)


def surrogate_classes(model, heads: ClassHeads, prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """h on each class prompt, ``B×K×256×256``, and its fused ``B×(K+1)×256×256`` label logits."""
    b, k = prompts.shape[:2]
    logits = model.surrogate(prompts.flatten(0, 1).float())
    logits = logits.view(b, k, logits.shape[-2], logits.shape[-1])
    return logits, heads.h_adapter(logits)


def class_forward(model, heads: ClassHeads, g_input: torch.Tensor, image_embedding: torch.Tensor | None, *,
                  with_surrogate: bool = True) -> ClassOutput:
    """Prompts, SAM's K binary logits and the fused map, and h's (``image_embedding`` None: h only)."""
    prompts = class_prompts(model, heads, g_input)
    sam_logits = fused = h_logits = h_fused = None
    if image_embedding is not None:
        sam_logits = decode_classes(model, image_embedding, prompts)
        fused = heads.adapter(sam_logits.float())
    if with_surrogate and model.surrogate is not None:
        h_logits, h_fused = surrogate_classes(model, heads, prompts)
    return ClassOutput(sam_logits, fused, h_logits, h_fused, prompts)

