"""HarDNet encoders: the image backbone of the prompt generator g.

A Harmonic DenseNet (HarDNet) is a stack of HarD blocks, each a sparse
DenseNet in which layer ``k`` reads only the layers ``k - 2**i`` for every
power of two dividing ``k``. :data:`HARDNET85` is the ImageNet HarDNet-85
used by AutoSAM (docs/method.md); :data:`HARDNET_SMALL` is a narrow,
shallow variant with the same tap interface that trains in reasonable time
on a laptop CPU.

The modules are laid out as one ``nn.ModuleList`` named ``base`` (stem
convolutions, max-pool, then block / [dropout] / transition / [max-pool]
for every block), the layout of the published HarDNet-85 ImageNet state
dict (keys ``base.<i>.…``), so that :func:`load_pretrained_backbone` can load
such a file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

#: Output strides the prompt generator's decoder reads; a truncated encoder ends at the deepest.
DECODER_STRIDES = (4, 8, 16)


@dataclass(frozen=True)
class HarDNetSpec:
    """Architecture of a HarDNet.

    Attributes
    ----------
    stem_channels : tuple of int
        Widths of the two stem convolutions (3x3 stride 2, then 3x3).
    growth : tuple of int
        Growth rate of each HarD block.
    n_layers : tuple of int
        Number of layers in each HarD block.
    transition_channels : tuple of int
        Width of the 1x1 transition after each block (the block's output).
    pool_after : tuple of int
        Indices of the blocks followed by a 2x2 max-pool (stride 2).
    multiplier : float
        Width multiplier per extra link of a HarD layer.
    last_dropout : float
        Dropout probability before the last transition (0 for none).
    """

    stem_channels: tuple[int, int]
    growth: tuple[int, ...]
    n_layers: tuple[int, ...]
    transition_channels: tuple[int, ...]
    pool_after: tuple[int, ...]
    multiplier: float = 1.7
    last_dropout: float = 0.0


#: HarDNet-85 as in the HarDNet paper and the published ImageNet weights.
HARDNET85 = HarDNetSpec(
    stem_channels=(48, 96),
    growth=(24, 24, 28, 36, 48, 256),
    n_layers=(8, 16, 16, 16, 16, 4),
    transition_channels=(192, 256, 320, 480, 720, 1280),
    pool_after=(0, 2, 4),
    last_dropout=0.1,
)

#: A small HarDNet for CPU training at 128-256 px input: taps /4 (48), /8 (96), /16 (160).
HARDNET_SMALL = HarDNetSpec(
    stem_channels=(16, 32),
    growth=(10, 14, 18),
    n_layers=(4, 8, 8),
    transition_channels=(48, 96, 160),
    pool_after=(0, 1),
)


def hard_links(k: int) -> list[int]:
    """Indices of the earlier layers that HarD layer ``k`` (1-based) reads.

    Layer ``k`` reads layer ``k - 2**i`` for every ``2**i`` dividing ``k``,
    nearest first; index 0 is the block input. This order is the order in
    which the inputs are concatenated.
    """
    if k < 1:
        raise ValueError(f"HarD layers are numbered from 1, got {k}")
    links = []
    step = 1
    while step <= k:
        if k % step == 0:
            links.append(k - step)
        step *= 2
    return links


def round_to_even(value: float) -> int:
    """The even integer nearest to ``value`` (halfway cases, i.e. odd integers, round up)."""
    return 2 * math.floor(value / 2 + 0.5)


def hard_layer_width(k: int, growth: int, multiplier: float) -> int:
    """Output channels of HarD layer ``k``: ``growth * multiplier**(links - 1)``, rounded to even."""
    return round_to_even(growth * multiplier ** (len(hard_links(k)) - 1))


class ConvUnit(nn.Sequential):
    """Convolution (no bias) -> BatchNorm -> ReLU6.

    Maps ``Bx{in_channels}xHxW`` to ``Bx{out_channels}x(H/stride)x(W/stride)``
    ("same" padding). Sub-modules are named ``conv``, ``norm``, ``relu`` as in
    the published state dicts.
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
        )
        self.norm = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU6(inplace=True)


class HarDBlock(nn.Module):
    """One harmonic dense block.

    Parameters
    ----------
    in_channels : int
        Channels of the block input (layer 0).
    growth : int
        Base width of a layer.
    n_layers : int
        Number of 3x3 conv units.
    multiplier : float
        Width multiplier per extra link.

    Attributes
    ----------
    layer_widths : tuple of int
        Output channels of layers 1..n_layers.
    out_channels : int
        Channels of the output: the odd-numbered layers and the last one, concatenated.
    """

    def __init__(self, in_channels: int, *, growth: int, n_layers: int, multiplier: float) -> None:
        super().__init__()
        self.links = [hard_links(k) for k in range(1, n_layers + 1)]
        widths = [in_channels] + [hard_layer_width(k, growth, multiplier) for k in range(1, n_layers + 1)]
        self.layers = nn.ModuleList(
            ConvUnit(sum(widths[j] for j in links), widths[k]) for k, links in enumerate(self.links, start=1)
        )
        self.kept = [k for k in range(1, n_layers + 1) if k % 2 == 1 or k == n_layers]
        self.layer_widths = tuple(widths[1:])
        self.out_channels = sum(widths[k] for k in self.kept)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Bx{in_channels}xHxW`` -> ``Bx{out_channels}xHxW``."""
        outputs = [x]
        for links, layer in zip(self.links, self.layers):
            inputs = [outputs[j] for j in links]
            outputs.append(layer(torch.cat(inputs, dim=1) if len(inputs) > 1 else inputs[0]))
        return torch.cat([outputs[k] for k in self.kept], dim=1)


def _block_strides(spec: HarDNetSpec) -> list[int]:
    """Output stride at which each block of ``spec`` runs (the stem ends at /4)."""
    strides, stride = [], 4
    for i in range(len(spec.growth)):
        strides.append(stride)
        if i in spec.pool_after:
            stride *= 2
    return strides


class HarDNet(nn.Module):
    """HarDNet encoder returning multi-scale feature maps.

    Parameters
    ----------
    spec : HarDNetSpec
        The architecture, e.g. :data:`HARDNET85` or :data:`HARDNET_SMALL`.
    full : bool
        Build every block. By default the encoder ends with the transition
        that produces the deepest of :data:`DECODER_STRIDES` (/16), dropping
        the blocks the prompt generator never reads (for HarDNet-85: the last
        block, its dropout and transition, and the pool before them).

    Attributes
    ----------
    base : nn.ModuleList
        Stem, blocks, transitions and pools in order (published key layout).
    tap_channels : dict of int to int
        Output stride -> channels of the feature map returned at that stride.
    """

    def __init__(self, spec: HarDNetSpec = HARDNET85, *, full: bool = False) -> None:
        super().__init__()
        self.spec = spec
        self.full = full
        block_strides = _block_strides(spec)
        n_blocks = len(spec.growth) if full else sum(s <= max(DECODER_STRIDES) for s in block_strides)
        stem, wide = spec.stem_channels
        base: list[nn.Module] = [
            ConvUnit(3, stem, stride=2),
            ConvUnit(stem, wide),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        ]
        taps = {2: (1, wide)}  # stride -> (index in base, channels)
        channels = wide
        for i in range(n_blocks):
            block = HarDBlock(
                channels, growth=spec.growth[i], n_layers=spec.n_layers[i], multiplier=spec.multiplier
            )
            base.append(block)
            if spec.last_dropout > 0 and i == len(spec.growth) - 1:
                base.append(nn.Dropout(spec.last_dropout))
            channels = spec.transition_channels[i]
            base.append(ConvUnit(block.out_channels, channels, kernel_size=1))
            # The last transition at a resolution is that resolution's tap.
            taps[block_strides[i]] = (len(base) - 1, channels)
            if i in spec.pool_after and i + 1 < n_blocks:
                base.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.base = nn.ModuleList(base)
        self._tap_index = {index: stride for stride, (index, _) in taps.items()}
        self.tap_channels = {stride: ch for stride, (_, ch) in sorted(taps.items())}

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Encode an image batch.

        Parameters
        ----------
        x : torch.Tensor
            ``Bx3xHxW`` float images, normalised.

        Returns
        -------
        dict of int to torch.Tensor
            Output stride ``s`` -> ``Bx{tap_channels[s]}x(H/s)x(W/s)`` feature
            map, for ``s`` in 2, 4, 8, 16 (and 32 when ``full``).
        """
        features = {}
        for index, module in enumerate(self.base):
            x = module(x)
            stride = self._tap_index.get(index)
            if stride is not None:
                features[stride] = x
        return features


def _read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    from ..io.weights import read_state_dict

    state = read_state_dict(path, "file of HarDNet weights")  # safe load; clear errors for foreign files
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{os.fspath(path)!r} does not hold a state dict (found {type(state).__name__})")
    # Weights saved from nn.DataParallel carry a "module." prefix.
    return {key.removeprefix("module."): value for key, value in state.items()}


def _listed(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", … ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_pretrained_backbone(model: HarDNet, path: str | os.PathLike) -> None:
    """Load published ImageNet weights (keys ``base.<i>.…``) into ``model`` in place.

    Keys for modules the model does not build (the classifier ``base.19`` of
    HarDNet-85, and in a truncated encoder the last block and its
    transition) are ignored. Every other key must match the model exactly:
    any missing key (BatchNorm's ``num_batches_tracked`` excepted),
    unexpected key or shape mismatch raises ``ValueError`` listing them all,
    and nothing is loaded.

    Parameters
    ----------
    model : HarDNet
        The encoder to fill.
    path : str or os.PathLike
        A file written by ``torch.save(state_dict)``; read with ``weights_only=True``.
    """
    state = _read_state_dict(path)
    own = model.state_dict()
    built = len(model.base)

    def ignored(key: str) -> bool:
        parts = key.split(".")
        return len(parts) > 2 and parts[0] == "base" and parts[1].isdigit() and int(parts[1]) >= built

    wanted = {key: value for key, value in state.items() if not ignored(key)}
    missing = [k for k in own if k not in wanted and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in wanted if k not in own]
    mismatched = [
        f"{k} (file {tuple(v.shape)}, model {tuple(own[k].shape)})"
        for k, v in wanted.items()
        if k in own and v.shape != own[k].shape
    ]
    found = {"missing keys": missing, "unexpected keys": unexpected, "shape mismatches": mismatched}
    problems = [f"{label}: {_listed(keys)}" for label, keys in found.items() if keys]
    if problems:
        raise ValueError(f"Weights in {os.fspath(path)!r} do not fit this HarDNet; " + "; ".join(problems))
    model.load_state_dict(wanted, strict=False)
