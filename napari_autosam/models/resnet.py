"""A ResNet encoder for g with ImageNet weights from torchvision's weights registry.

The paper's g uses HarDNet-85, whose ImageNet weights no well-kept registry
serves.  This variant keeps g's decoder and swaps the encoder for a
torchvision ResNet truncated after its /16 stage (``layer3``; ``layer4`` and
the classifier are dropped), so a new model can start from ImageNet features
that any user with internet gets automatically:

* the URL is the one torchvision's registry names for ``IMAGENET1K_V1``;
* :func:`torch.hub.load_state_dict_from_url` downloads it once into torch's
  hub cache (``$TORCH_HOME/hub/checkpoints``) and verifies the SHA-256 prefix
  that the file name carries (``resnet18-f37072fd.pth``);
* offline, a missing file is one clear error naming the file and the URL.

ImageNet normalisation equals SAM's pixel mean/std (0-255 scale), so g's
input needs no change.  Taps: /4 (``layer1``), /8 (``layer2``), /16 (``layer3``).
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import torch
from torch import nn

#: Encoder layers kept from each torchvision architecture, and the channels of the /4, /8, /16 taps.
ARCHITECTURES = {"resnet18": (64, 128, 256), "resnet34": (64, 128, 256)}


class PretrainedWeightsError(ValueError):
    """ImageNet weights that cannot be had (offline, corrupt, or the wrong architecture)."""


class ResNetEncoder(nn.Module):
    """``B×3×S×S`` → ``{4: B×64×S/4², 8: B×128×S/8², 16: B×256×S/16²}`` (torchvision's module names)."""

    def __init__(self, arch: str = "resnet18") -> None:
        super().__init__()
        import torchvision

        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown ResNet {arch!r}; valid: {', '.join(ARCHITECTURES)}")
        full = getattr(torchvision.models, arch)(weights=None)
        self.arch = arch
        self.conv1, self.bn1, self.relu, self.maxpool = full.conv1, full.bn1, full.relu, full.maxpool
        self.layer1, self.layer2, self.layer3 = full.layer1, full.layer2, full.layer3
        self.tap_channels = dict(zip((4, 8, 16), ARCHITECTURES[arch]))

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f4 = self.layer1(x)
        f8 = self.layer2(f4)
        return {4: f4, 8: f8, 16: self.layer3(f8)}

    def load_imagenet(self, state: dict[str, torch.Tensor], label: str) -> None:
        """Load a torchvision ImageNet state dict (``layer4.*`` and ``fc.*`` are ignored)."""
        wanted = self.state_dict()
        kept = {k: v for k, v in state.items() if k in wanted}
        missing = sorted(set(wanted) - set(kept))
        wrong = [k for k in kept if kept[k].shape != wanted[k].shape]
        if missing or wrong:
            raise PretrainedWeightsError(f"{label} does not hold {self.arch} ImageNet weights "
                                         f"(missing {missing[:3]}, wrong shape {wrong[:3]})")
        self.load_state_dict(kept)


def weights_url(arch: str) -> str:
    """The ``IMAGENET1K_V1`` URL that torchvision's weights registry gives for ``arch``."""
    import torchvision

    enum = torchvision.models.get_model_weights(arch)
    return enum.IMAGENET1K_V1.url


def hub_file(arch: str) -> Path:
    """Where torch's hub cache keeps (or will keep) the weights of ``arch``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights_url(arch))


def imagenet_state(arch: str) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of ``arch``: from torch's hub cache, downloaded and hash-checked when missing."""
    url = weights_url(arch)
    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    try:
        return torch.hub.load_state_dict_from_url(url, progress=False, check_hash=True, map_location="cpu",
                                                  weights_only=True)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise PretrainedWeightsError(
            f"cannot download the ImageNet weights {target.name} from {url} ({reason}); connect once, "
            f"or put that file at {target}") from None
    except RuntimeError as exc:  # hash mismatch or an unreadable file
        raise PretrainedWeightsError(f"the ImageNet weights {target.name} from {url} failed to load ({exc}); "
                                     f"delete {target} and try again") from None


def load_weights_file(encoder: ResNetEncoder, path: str | os.PathLike) -> None:
    """Load ImageNet weights for ``encoder`` from a local torchvision ``.pth`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one clear line
        raise PretrainedWeightsError(f"{path}: not a readable weights file ({exc})") from None
    encoder.load_imagenet(state, str(path))
