"""Depth-aware adapters inside SAM's ViT image encoder, without touching SAM's own weights.

A stack is encoded a *window* of ``D`` neighbouring slices at a time: the
``D`` slices go through the encoder as one batch ``(B·D)×3×1024×1024``
(``B`` windows of ``D`` consecutive slices, slice-major inside a window).
:func:`adapted_encode` runs segment-anything's own encoder modules
(patch embedding, blocks, neck) in their own order, and adds three
trainable pieces, all held by :class:`DepthAdapters`:

* a **depth adapter** per ViT block, parallel to the block's MLP (it reads
  the same ``norm2`` output and its result is added next to the MLP's). It is
  the only place where slices of a window exchange information:

  - ``"depth_mlp"`` (the default, Self-Prompt-SAM's depth-fused adapter):
    ``Linear(C→r)`` → GELU → an inverted-bottleneck MLP along the depth axis
    (``D → 4D → D``, with a skip) at every token → ``Linear(r→C)``;
  - ``"dconv"`` (MaskSAM's DConvAdapter): ``Linear(C→r)`` → GELU → depth-wise
    ``3×3×3`` convolution over depth×rows×columns → LayerNorm → GELU, with a
    skip → ``Linear(r→C)``;

* a learnable **depth position embedding** ``D×C``, added to every token of
  slice ``d`` after SAM's own (2D) position embedding;
* optionally a **modality adapter**: a learnable ``1×1`` convolution from the
  ``C_in`` channels of a multichannel stack to SAM's three, applied to the
  0-255 scaled channels before SAM's resize and normalisation.

The last projection of every depth adapter and the depth embedding start at
zero, and the modality adapter starts as the default channel-to-RGB mapping
(:func:`~napari_autosam.io.normalize.to_rgb_uint8`), so an untrained
:class:`DepthAdapters` gives exactly SAM's own embeddings.  Shapes inside a
block: tokens ``(B·D)×64×64×C`` (``C`` = 64 for the tiny SAM, 768 / 1024 /
1280 for vit_b/l/h), adapter bottleneck ``r = C/4``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .embedding import SAM_INPUT_SIZE

#: The adapter kind used when none is named.
DEFAULT_KIND = "depth_mlp"
#: Slices per window when none is given.
DEFAULT_DEPTH_WINDOW = 5
#: Largest window / channel count a checkpoint may ask for (a crafted file must not allocate gigabytes).
MAX_DEPTH_WINDOW = 64
MAX_IN_CHANNELS = 64


class DepthWindowError(ValueError):
    """A stack with fewer slices than the adapters' depth window."""


class AdapterMismatchError(ValueError):
    """Adapters that do not fit this SAM's encoder, or channels that do not fit the modality adapter."""


def _zero_linear(n_in: int, n_out: int) -> nn.Linear:
    """A linear layer that starts at zero, so an untrained adapter adds nothing to SAM's features."""
    layer = nn.Linear(n_in, n_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class DepthMLPAdapter(nn.Module):
    """Self-Prompt-SAM's depth-fused adapter: ``(B·D)×H×W×C`` → ``(B·D)×H×W×C``."""

    def __init__(self, dim: int, depth_window: int, bottleneck: int, expansion: int = 4) -> None:
        super().__init__()
        self.depth_window = depth_window
        self.down = nn.Linear(dim, bottleneck)
        self.depth_mlp = nn.Sequential(nn.Linear(depth_window, depth_window * expansion), nn.GELU(),
                                       nn.Linear(depth_window * expansion, depth_window))
        self.up = _zero_linear(bottleneck, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, h, w, _ = x.shape
        d = self.depth_window
        y = F.gelu(self.down(x))                                  # N×H×W×r
        y = y.reshape(n // d, d, h, w, -1).movedim(1, -1)         # B×H×W×r×D
        y = y + self.depth_mlp(y)                                 # mixes the D slices at every token
        return self.up(y.movedim(-1, 1).reshape(n, h, w, -1))


class DConvAdapter(nn.Module):
    """MaskSAM's depth-wise 3D convolution adapter: ``(B·D)×H×W×C`` → ``(B·D)×H×W×C``."""

    def __init__(self, dim: int, depth_window: int, bottleneck: int) -> None:
        super().__init__()
        self.depth_window = depth_window
        self.down = nn.Linear(dim, bottleneck)
        self.conv = nn.Conv3d(bottleneck, bottleneck, 3, padding=1, groups=bottleneck)
        self.norm = nn.LayerNorm(bottleneck)
        self.up = _zero_linear(bottleneck, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, h, w, _ = x.shape
        d = self.depth_window
        y = F.gelu(self.down(x))                                          # N×H×W×r
        vol = y.reshape(n // d, d, h, w, -1).permute(0, 4, 1, 2, 3)       # B×r×D×H×W
        z = self.conv(vol).permute(0, 2, 3, 4, 1).reshape(n, h, w, -1)    # back to N×H×W×r
        y = y + F.gelu(self.norm(z))
        return self.up(y)


#: Registered depth-adapter kinds: name → class(dim, depth_window, bottleneck).
ADAPTER_KINDS: dict[str, type[nn.Module]] = {"depth_mlp": DepthMLPAdapter, "dconv": DConvAdapter}


class ModalityAdapter(nn.Module):
    """``B×C_in×H×W`` channels (0-255 scale) → ``B×3×H×W``, a learnable 1×1 convolution.

    Starts as :func:`~napari_autosam.io.normalize.to_rgb_uint8`'s default view:
    one channel as gray, two as red and green, three or more as R, G, B from
    the first three.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.conv = nn.Conv2d(in_channels, 3, 1)
        weight = torch.zeros(3, in_channels, 1, 1)
        if in_channels == 1:
            weight[:, 0] = 1.0
        else:
            for c in range(min(3, in_channels)):
                weight[c, c] = 1.0
        with torch.no_grad():
            self.conv.weight.copy_(weight)
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class DepthAdapters(nn.Module):
    """Everything trainable that a depth-aware encoder adds to one SAM variant.

    Parameters
    ----------
    kind : a key of :data:`ADAPTER_KINDS`
    depth_window : slices per window ``D``
    embed_dim, n_blocks : width and block count of the SAM encoder it fits
    in_channels : channels of the stack; 3 (RGB or gray shown as RGB) needs no modality adapter
    bottleneck : adapter width ``r`` (default ``embed_dim // 4``)
    sam_variant : the SAM it was built for (recorded, checked on use)
    """

    def __init__(self, kind: str, depth_window: int, embed_dim: int, n_blocks: int, *, in_channels: int = 3,
                 bottleneck: int | None = None, sam_variant: str | None = None) -> None:
        super().__init__()
        if kind not in ADAPTER_KINDS:
            raise ValueError(f"unknown depth adapter {kind!r}; choose one of {', '.join(ADAPTER_KINDS)}")
        if not 1 <= depth_window <= MAX_DEPTH_WINDOW:
            raise ValueError(f"depth window must be from 1 to {MAX_DEPTH_WINDOW} slices, got {depth_window}")
        if not 1 <= in_channels <= MAX_IN_CHANNELS:
            raise ValueError(f"in_channels must be from 1 to {MAX_IN_CHANNELS}, got {in_channels}")
        bottleneck = bottleneck or max(8, embed_dim // 4)
        self.kind, self.depth_window, self.in_channels = kind, depth_window, in_channels
        self.embed_dim, self.n_blocks, self.bottleneck, self.sam_variant = embed_dim, n_blocks, bottleneck, sam_variant
        self.blocks = nn.ModuleList(ADAPTER_KINDS[kind](embed_dim, depth_window, bottleneck) for _ in range(n_blocks))
        self.depth_embed = nn.Parameter(torch.zeros(depth_window, embed_dim))
        self.modality = ModalityAdapter(in_channels) if in_channels != 3 else None

    @property
    def config(self) -> dict[str, Any]:
        """What the checkpoint's ``"adapters"`` metadata records (enough to rebuild it)."""
        return {"kind": self.kind, "depth_window": self.depth_window, "in_channels": self.in_channels,
                "embed_dim": self.embed_dim, "n_blocks": self.n_blocks, "bottleneck": self.bottleneck,
                "sam_variant": self.sam_variant}

    def to_rgb(self, channels: torch.Tensor) -> torch.Tensor:
        """``N×C_in×H×W`` (0-255) → ``N×3×H×W`` through the modality adapter (unchanged when C_in is 3)."""
        if channels.shape[1] != self.in_channels:
            raise AdapterMismatchError(f"the stack has {channels.shape[1]} channels but the model's modality "
                                       f"adapter takes {self.in_channels}")
        return channels if self.modality is None else self.modality(channels)


def build_adapters(sam, kind: str = DEFAULT_KIND, depth_window: int = DEFAULT_DEPTH_WINDOW, *, in_channels: int = 3,
                   seed: int = 0) -> DepthAdapters:
    """New (untrained: SAM's output unchanged) adapters fitting ``sam``'s image encoder, seeded."""
    from .registry import sam_identity

    encoder = sam.image_encoder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        adapters = DepthAdapters(kind, depth_window, _embed_dim(encoder), len(encoder.blocks),
                                 in_channels=in_channels, sam_variant=sam_identity(sam).variant)
    return adapters.to(next(sam.parameters()).device)


def _embed_dim(encoder) -> int:
    return int(encoder.patch_embed.proj.out_channels)


def check_adapters(adapters: DepthAdapters, sam, what: str = "the model") -> None:
    """Raise :class:`AdapterMismatchError` (one line) when ``adapters`` do not fit ``sam``'s encoder."""
    from .registry import sam_identity

    encoder = sam.image_encoder
    dim, blocks = _embed_dim(encoder), len(encoder.blocks)
    if (adapters.embed_dim, adapters.n_blocks) != (dim, blocks):
        raise AdapterMismatchError(
            f"{what}'s depth adapters were trained for SAM {adapters.sam_variant or '?'} ({adapters.n_blocks} "
            f"blocks of width {adapters.embed_dim}), but this SAM is {sam_identity(sam).variant} "
            f"({blocks} blocks of width {dim}); use that SAM (--sam {adapters.sam_variant or '...'})")


def depth_windows(n_slices: int, depth_window: int, what: str = "the stack") -> list[int]:
    """First slices of the windows covering ``n_slices``: every ``D`` slices, the last one ending at the end.

    Raises :class:`DepthWindowError` when the stack is shorter than one window.
    """
    if n_slices < depth_window:
        raise DepthWindowError(f"{what} has {n_slices} slice{'s' * (n_slices != 1)}, fewer than the depth window "
                               f"of {depth_window}; give a stack of at least {depth_window} slices "
                               "(or use a model without depth adapters)")
    starts = list(range(0, n_slices - depth_window + 1, depth_window))
    if starts[-1] + depth_window < n_slices:
        starts.append(n_slices - depth_window)
    return starts


def _block_forward(block, adapter: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """segment-anything's ``Block.forward``, with ``adapter`` parallel to the MLP (``N×H×W×C`` tokens)."""
    from segment_anything.modeling.image_encoder import window_partition, window_unpartition

    shortcut = x
    y = block.norm1(x)
    if block.window_size > 0:
        height, width = y.shape[1], y.shape[2]
        y, pad_hw = window_partition(y, block.window_size)
    y = block.attn(y)
    if block.window_size > 0:
        y = window_unpartition(y, block.window_size, pad_hw, (height, width))
    x = shortcut + y
    z = block.norm2(x)
    return x + block.mlp(z) + adapter(z)


def adapted_encode(sam, adapters: DepthAdapters, pixels: torch.Tensor) -> torch.Tensor:
    """SAM's image encoder with the depth adapters: ``(B·D)×3×1024²`` normalised → ``(B·D)×256×64×64``.

    The batch holds ``B`` windows of ``D = adapters.depth_window`` consecutive
    slices.  Gradients flow to the adapters (SAM's parameters are frozen, not
    detached, so earlier blocks' adapters learn through later blocks).
    """
    encoder = sam.image_encoder
    n, d = pixels.shape[0], adapters.depth_window
    if n % d:
        raise ValueError(f"the batch has {n} slices, not a whole number of windows of {d}")
    x = encoder.patch_embed(pixels)                               # N×64×64×C
    if encoder.pos_embed is not None:
        x = x + encoder.pos_embed
    x = x + adapters.depth_embed.repeat(n // d, 1)[:, None, None, :].to(x.dtype)
    for block, adapter in zip(encoder.blocks, adapters.blocks):
        x = _block_forward(block, adapter, x)
    return encoder.neck(x.permute(0, 3, 1, 2))


def window_pixels(adapters: DepthAdapters, channels: torch.Tensor, size: int = SAM_INPUT_SIZE) -> torch.Tensor:
    """``N×C_in×H×W`` 0-255 slices → ``N×3×size×size`` in SAM's padded frame, normalised (differentiable).

    The modality adapter (when there is one) acts at the slices' own
    resolution, before the resize and the padding, so the padding stays 0.
    """
    from .embedding import to_padded_frame

    rgb = adapters.to_rgb(channels.float())
    return to_padded_frame(rgb, size)


def adapters_from_config(config: dict[str, Any]) -> DepthAdapters:
    """Rebuild (empty) adapters from a checkpoint's ``"adapters"`` metadata; ValueError when it is malformed."""
    if not isinstance(config, dict):
        raise ValueError(f"adapters metadata is a {type(config).__name__}, expected an object")
    unknown = sorted(set(config) - {"kind", "depth_window", "in_channels", "embed_dim", "n_blocks", "bottleneck",
                                    "sam_variant"})
    if unknown:
        raise ValueError(f"adapters metadata has unknown settings {unknown}")
    whole = {k: config.get(k) for k in ("depth_window", "in_channels", "embed_dim", "n_blocks", "bottleneck")}
    limits = {"depth_window": MAX_DEPTH_WINDOW, "in_channels": MAX_IN_CHANNELS, "embed_dim": 4096,
              "n_blocks": 256, "bottleneck": 4096}
    for key, value in whole.items():
        if not (isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= limits[key]):
            raise ValueError(f"adapters {key} is {value!r}; expected a whole number from 1 to {limits[key]}")
    return DepthAdapters(str(config.get("kind")), whole["depth_window"], whole["embed_dim"], whole["n_blocks"],
                         in_channels=whole["in_channels"], bottleneck=whole["bottleneck"],
                         sam_variant=config.get("sam_variant"))
