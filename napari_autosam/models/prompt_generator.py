"""The prompt generator g of AutoSAM: image -> dense prompt embedding for SAM.

g is an encoder (a :class:`~napari_autosam.models.hardnet.HarDNet`) and a small
U-Net-style decoder that fuses the /16, /8 and /4 feature maps and maps them
to SAM's dense-prompt space, ``Bx256x64x64`` in [-1, 1] (docs/method.md).
Variants are built by name from :data:`PROMPT_GENERATORS`: the paper's
``hardnet85``, a small ``hardnet_small`` for CPUs, and ``resnet18`` /
``resnet34`` (a departure from the paper: torchvision ResNets whose ImageNet
weights a new model downloads automatically, see :mod:`.resnet`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .hardnet import HARDNET85, HARDNET_SMALL, HarDNet, HarDNetSpec, load_pretrained_backbone
from .stain import LEGACY_INPUT_TRANSFORM, InputTransform

#: Channels of SAM's dense prompt embedding.
EMBED_DIM = 256
#: Side of SAM's image/prompt embedding grid.
EMBEDDING_SIZE = 64


class UpBlock(nn.Module):
    """Upsample ×2 (bilinear), concatenate a skip, then conv3x3, conv3x3, BatchNorm, LeakyReLU.

    Maps ``(Bx{in_channels}xhxw, Bx{skip_channels}xHxW)`` to ``Bx{out_channels}xHxW``
    (``H ≈ 2h``; the upsampling goes to the skip's exact size).
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.fuse = nn.Sequential(
            nn.Conv2d(in_channels + skip_channels, out_channels, 3, padding=1),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([x, skip], dim=1))


class PromptGenerator(nn.Module):
    """g: an image batch -> SAM dense prompt embeddings.

    Parameters
    ----------
    backbone : nn.Module
        Maps ``Bx3xSxS`` to a dict {output stride: feature map} holding at
        least the strides 4, 8 and 16.
    tap_channels : sequence of 3 int
        Channels ``(c4, c8, c16)`` of the backbone's /4, /8 and /16 maps.
    input_size : int
        Side ``S`` the images are resized to before g (a multiple of 16;
        the authors used 256, 352 and 512).
    backbone_name : str
        Registry name of this variant; ``config`` rebuilds it by that name.
    input_transform : str
        What the encoder sees of the normalised picture (:mod:`.stain`):
        ``"rgb"`` (unchanged), ``"rgb_norm"`` or ``"hed"``.

    Notes
    -----
    Decoder: up-block(c16 + c8 -> c8), up-block(c8 + c4 -> c4), head conv3x3
    c4 -> 256, BatchNorm, ReLU, conv3x3 256 -> 256, tanh; then a bilinear
    resize of the /4 map to 64x64.
    """

    def __init__(
        self,
        backbone: nn.Module,
        tap_channels: Sequence[int],
        *,
        input_size: int = 512,
        backbone_name: str = "custom",
        input_transform: str = LEGACY_INPUT_TRANSFORM,
    ) -> None:
        super().__init__()
        if int(input_size) != input_size or input_size < 16 or input_size % 16:
            raise ValueError(f"input_size must be a positive multiple of 16, got {input_size!r}")
        c4, c8, c16 = tap_channels
        self.backbone = backbone
        self.input_size = int(input_size)
        self.backbone_name = backbone_name
        self.input_transform = InputTransform(input_transform)
        self.up16 = UpBlock(c16, c8, c8)
        self.up8 = UpBlock(c8, c4, c4)
        self.head = nn.Sequential(
            nn.Conv2d(c4, EMBED_DIM, 3, padding=1),
            nn.BatchNorm2d(EMBED_DIM),
            nn.ReLU(inplace=True),
            nn.Conv2d(EMBED_DIM, EMBED_DIM, 3, padding=1),
            nn.Tanh(),
        )

    @property
    def config(self) -> dict:
        """JSON-serialisable arguments of :func:`build_prompt_generator` that rebuild this variant."""
        config = {"name": self.backbone_name, "input_size": self.input_size}
        if self.input_transform.name != LEGACY_INPUT_TRANSFORM:  # older readers see the same metadata as before
            config["input_transform"] = self.input_transform.name
        return config

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict dense prompt embeddings.

        Parameters
        ----------
        x : torch.Tensor
            ``Bx3xSxS`` float images, already normalised with SAM's pixel
            mean and std (normally ``S == input_size``).

        Returns
        -------
        torch.Tensor
            ``Bx256x64x64`` embeddings in [-1, 1], for SAM's mask decoder
            as ``dense_prompt_embeddings``.
        """
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
            raise ValueError(f"PromptGenerator expects a Bx3xSxS batch, got shape {tuple(x.shape)}")
        features = self.backbone(self.input_transform(x))
        y = self.up16(features[16], features[8])
        y = self.up8(y, features[4])
        y = self.head(y)
        return F.interpolate(y, size=(EMBEDDING_SIZE, EMBEDDING_SIZE), mode="bilinear", align_corners=False)


def _build(
    name: str,
    spec: HarDNetSpec,
    *,
    input_size: int,
    pretrained_backbone: str | os.PathLike | None,
) -> PromptGenerator:
    backbone = HarDNet(spec)
    if pretrained_backbone is not None:
        load_pretrained_backbone(backbone, pretrained_backbone)
    taps = backbone.tap_channels
    return PromptGenerator(
        backbone, (taps[4], taps[8], taps[16]), input_size=input_size, backbone_name=name
    )


def build_hardnet85(
    *, input_size: int = 512, pretrained_backbone: str | os.PathLike | None = None
) -> PromptGenerator:
    """g with the HarDNet-85 encoder truncated after its /16 tap (as in AutoSAM)."""
    return _build("hardnet85", HARDNET85, input_size=input_size, pretrained_backbone=pretrained_backbone)


def build_hardnet_small(
    *, input_size: int = 512, pretrained_backbone: str | os.PathLike | None = None
) -> PromptGenerator:
    """g with a small HarDNet (:data:`~napari_autosam.models.hardnet.HARDNET_SMALL`) for CPU training.

    Meant for ``input_size`` 128-256 on a CPU; no published weights exist for it.
    """
    return _build("hardnet_small", HARDNET_SMALL, input_size=input_size, pretrained_backbone=pretrained_backbone)


def _build_resnet(arch: str, *, input_size: int, pretrained_backbone, imagenet: bool) -> PromptGenerator:
    from .resnet import ResNetEncoder, imagenet_state, load_weights_file

    encoder = ResNetEncoder(arch)
    if pretrained_backbone is not None:
        load_weights_file(encoder, pretrained_backbone)
    elif imagenet:
        encoder.load_imagenet(imagenet_state(arch), f"the {arch} ImageNet weights")
    taps = encoder.tap_channels
    return PromptGenerator(encoder, (taps[4], taps[8], taps[16]), input_size=input_size, backbone_name=arch)


def build_resnet18(
    *, input_size: int = 512, pretrained_backbone: str | os.PathLike | None = None, imagenet: bool = False
) -> PromptGenerator:
    """g with a torchvision ResNet-18 encoder up to ``layer3``; ``imagenet`` downloads its ImageNet weights."""
    return _build_resnet("resnet18", input_size=input_size, pretrained_backbone=pretrained_backbone, imagenet=imagenet)


def build_resnet34(
    *, input_size: int = 512, pretrained_backbone: str | os.PathLike | None = None, imagenet: bool = False
) -> PromptGenerator:
    """g with a torchvision ResNet-34 encoder up to ``layer3``; ``imagenet`` downloads its ImageNet weights."""
    return _build_resnet("resnet34", input_size=input_size, pretrained_backbone=pretrained_backbone, imagenet=imagenet)


#: Prompt-generator builders by name; each takes ``input_size`` and ``pretrained_backbone``.
PROMPT_GENERATORS: dict[str, Callable[..., PromptGenerator]] = {
    "hardnet85": build_hardnet85,
    "hardnet_small": build_hardnet_small,
    "resnet18": build_resnet18,
    "resnet34": build_resnet34,
}
#: Variants whose ImageNet weights come from torchvision's registry (downloaded for new models).
IMAGENET_DOWNLOADS = ("resnet18", "resnet34")


def build_prompt_generator(
    name: str = "hardnet85",
    *,
    input_size: int = 512,
    pretrained_backbone: str | os.PathLike | None = None,
    imagenet: bool = False,
    input_transform: str = LEGACY_INPUT_TRANSFORM,
) -> PromptGenerator:
    """Build a prompt generator by registry name.

    Parameters
    ----------
    name : str
        A key of :data:`PROMPT_GENERATORS`.
    input_size : int
        Side of the square images g reads (multiple of 16).
    pretrained_backbone : str or os.PathLike, optional
        A file of ImageNet weights for the encoder (HarDNet: ``base.<i>.…``
        keys; ResNet: a torchvision state dict).
    imagenet : bool
        For :data:`IMAGENET_DOWNLOADS` variants without ``pretrained_backbone``:
        start from the ImageNet weights of torchvision's registry (downloaded
        once into torch's hub cache, hash-checked).  Ignored by the others.
    input_transform : str
        g's input transform (:data:`~napari_autosam.models.stain.INPUT_TRANSFORMS`).

    Raises
    ------
    ValueError
        For an unknown ``name`` (the message lists the valid ones), or
        weights that do not fit the encoder.
    """
    try:
        builder = PROMPT_GENERATORS[name]
    except KeyError:
        raise ValueError(
            f"Unknown prompt generator {name!r}; valid names: {', '.join(sorted(PROMPT_GENERATORS))}"
        ) from None
    if name in IMAGENET_DOWNLOADS:
        g = builder(input_size=input_size, pretrained_backbone=pretrained_backbone, imagenet=imagenet)
    else:
        g = builder(input_size=input_size, pretrained_backbone=pretrained_backbone)
    g.input_transform = InputTransform(input_transform)
    return g
