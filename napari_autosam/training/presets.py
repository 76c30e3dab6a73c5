"""Named augmentation presets: the paper's per-dataset settings, and the project's default.

A preset fixes the photometric jitter, whether the (approximate) affine warp
of cached embeddings is used, and which exact geometric variants (D4 flips
and rotations, each re-encoded by SAM) are cached.  ``None`` variants mean
"the device default" (two on a CPU, all eight on a GPU; see
:mod:`.config`).

The paper's geometric augmentations map onto what a frozen, cached encoder
allows: flips and 90° rotations are exact variants; rotations by other
angles, zooms and shifts can only warp the cached 64×64 embedding, which is
not what SAM computes for a warped image.  The ``glas`` and ``monuseg``
presets keep the paper's affine ranges through that warp (an approximate,
feature-level augmentation); the ``default`` preset leaves it off, as the
ablation in docs/training.md measured.
"""

from __future__ import annotations

from dataclasses import dataclass

from .augment import Augmentation


@dataclass(frozen=True)
class Preset:
    """One named augmentation recipe.

    Attributes
    ----------
    name : str
    description : str
        One line for menus and ``--help``.
    augment : Augmentation
        Colour jitter (g's input only) and the affine warp (off when ``affine_p`` is 0).
    variants : tuple of str or None
        Cached D4 variants; None for the device default.
    """

    name: str
    description: str
    augment: Augmentation
    variants: tuple[str, ...] | None = None


_NO_AFFINE = {"affine_p": 0.0, "rotation": 0.0, "scale": (1.0, 1.0), "translate": 0.0}

PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("default", "colour jitter 0.2/0.2/0.2/0.1 on g's input, exact flips; no embedding warp",
               Augmentation(0.2, 0.2, 0.2, 0.1, **_NO_AFFINE)),
        Preset("none", "no augmentation but the cached geometric variants",
               Augmentation.none()),
        Preset("glas", "paper's GlaS: jitter 0.2/0.2/0.2/0.1, horizontal flip, small affine (approximate warp)",
               Augmentation(0.2, 0.2, 0.2, 0.1, affine_p=0.5, rotation=0.0, scale=(0.8, 1.2), translate=0.02),
               ("identity", "hflip")),
        Preset("monuseg", "paper's MoNuSeg: jitter 0.4/0.4/0.4/0.1, horizontal flip, rotation ±20°, "
               "scale 0.75-1.25 (approximate warp)",
               Augmentation(0.4, 0.4, 0.4, 0.1, affine_p=0.5, rotation=20.0, scale=(0.75, 1.25), translate=0.0),
               ("identity", "hflip")),
        Preset("polyps", "paper's polyps: jitter 0.2/0.2/0.2/0.1, horizontal and vertical flips, 90° rotations "
               "(all exact)",
               Augmentation(0.2, 0.2, 0.2, 0.1, **_NO_AFFINE),
               ("identity", "hflip", "vflip", "rot90", "rot180", "rot270")),
    )
}

DEFAULT_PRESET = "default"


def preset_names() -> list[str]:
    """Names of the presets, the default first (for the CLI's choices and the GUI's menu)."""
    return [DEFAULT_PRESET] + sorted(n for n in PRESETS if n != DEFAULT_PRESET)


def get_preset(name: str | None) -> Preset:
    """The preset called ``name`` (None: the default); ValueError listing the valid names otherwise."""
    try:
        return PRESETS[name or DEFAULT_PRESET]
    except KeyError:
        raise ValueError(f"unknown augmentation preset {name!r}; valid: {', '.join(preset_names())}") from None
