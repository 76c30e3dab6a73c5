"""Build and load a frozen SAM by name or by checkpoint path.

Every variant, the test-sized ``tiny`` one included, is built with
segment-anything's own modelling classes and filled from a plain state
dict loaded with ``torch.load(weights_only=True)``: one loading path for
the official checkpoints, a user's file and the tiny model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

# From build_sam, not the package: the package's __init__ would import torchvision (see _lean_import).
from segment_anything.build_sam import _build_sam, sam_model_registry
from segment_anything.modeling import Sam

from ..io.atomic import atomic_path
from ..paths import sam_lineage
from ..progress import Task
from ._lean_import import no_random_init

#: The SAM used when nothing (no argument, no model metadata) names one.
DEFAULT_SAM = "vit_b"


@dataclass(frozen=True)
class SamArchitecture:
    """The image-encoder hyperparameters that tell the SAM variants apart."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]


ARCHITECTURES: dict[str, SamArchitecture] = {
    "vit_b": SamArchitecture("vit_b", 768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamArchitecture("vit_l", 1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamArchitecture("vit_h", 1280, 32, 16, (7, 15, 23, 31)),
    # Test-sized: same 256-channel neck, prompt encoder and mask decoder as the
    # real ones, a 2-block ViT of width 64 in front (~0.3 s per image on a CPU).
    "tiny": SamArchitecture("tiny", 64, 2, 2, (1,)),
}

#: Seed of the tiny SAM's fixed weights; bump TINY_REVISION if its recipe changes.
TINY_SEED = 20230405
TINY_REVISION = 1


def _build_tiny() -> Sam:
    arch = ARCHITECTURES["tiny"]
    return _build_sam(
        encoder_embed_dim=arch.embed_dim,
        encoder_depth=arch.depth,
        encoder_num_heads=arch.num_heads,
        encoder_global_attn_indexes=list(arch.global_attn_indexes),
        checkpoint=None,
    )


#: Builders of empty (randomly initialised) SAMs, keyed by variant name.
SAM_BUILDERS: dict[str, Callable[[], Sam]] = {
    "vit_b": lambda: sam_model_registry["vit_b"](checkpoint=None),
    "vit_l": lambda: sam_model_registry["vit_l"](checkpoint=None),
    "vit_h": lambda: sam_model_registry["vit_h"](checkpoint=None),
    "tiny": _build_tiny,
}


class SamCheckpointError(ValueError):
    """A checkpoint file that is not a SAM state dict, or not the expected variant."""


class SamMismatchError(ValueError):
    """A prompt generator trained for one SAM variant used with another."""


@dataclass(frozen=True)
class SamIdentity:
    """Which SAM a loaded module is: its variant and the checkpoint file it came from.

    Attributes
    ----------
    variant : str
        ``"vit_b"``, ``"vit_l"``, ``"vit_h"`` or ``"tiny"``.
    checkpoint_path : Path or None
        The state dict it was loaded from (None for a SAM built in memory).
    """

    variant: str
    checkpoint_path: Path | None = None

    @property
    def lineage(self) -> str:
        """Folder name of this SAM's model versions (see :func:`napari_autosam.paths.sam_lineage`)."""
        return sam_lineage(self.variant, self.checkpoint_path)

    @property
    def official(self) -> bool:
        """True for the official checkpoints and the tiny SAM (not a custom file)."""
        return self.lineage == self.variant

    def describe(self) -> str:
        """``"vit_b"``, or ``"vit_b (my_sam.pth)"`` for a custom checkpoint."""
        return self.variant if self.official else f"{self.variant} ({Path(self.checkpoint_path).name})"


_IDENTITY = "autosam_identity"


def sam_identity(sam: Sam) -> SamIdentity:
    """The :class:`SamIdentity` of a SAM module: the one :func:`load_sam` recorded, else
    the variant read off its image encoder's width and depth (no checkpoint path)."""
    identity = vars(sam).get(_IDENTITY)
    if isinstance(identity, SamIdentity):
        return identity
    encoder = sam.image_encoder
    width, depth = int(encoder.patch_embed.proj.out_channels), len(encoder.blocks)
    for arch in ARCHITECTURES.values():
        if (arch.embed_dim, arch.depth) == (width, depth):
            return SamIdentity(arch.name)
    raise SamCheckpointError(f"unknown SAM variant: image encoder of width {width} and depth {depth}")


def identity_of(sam):
    """What :func:`napari_autosam.paths.model_store_dir` takes for ``sam``: a SAM module's :class:`SamIdentity`;
    a variant name, an identity or None as given."""
    if sam is None or isinstance(sam, (str, SamIdentity)):
        return sam
    return sam_identity(sam)


def set_sam_identity(sam: Sam, identity: SamIdentity) -> Sam:
    """Record ``identity`` on ``sam`` (what :func:`load_sam` does); returns ``sam``."""
    vars(sam)[_IDENTITY] = identity
    sam.variant = identity.variant  # type: ignore[attr-defined]  # older scripts read these two
    sam.checkpoint_path = identity.checkpoint_path  # type: ignore[attr-defined]
    return sam


def check_sam_variant(trained_for: str | None, sam: Sam, what: str = "the model") -> None:
    """Raise :class:`SamMismatchError` when ``what`` was trained for another SAM variant than ``sam``.

    The one check used by training, evaluation, segmentation, the CLI and the
    widget.  ``trained_for`` None (an untrained or foreign model) always passes.
    """
    variant = sam_identity(sam).variant
    if trained_for and trained_for != variant:
        raise SamMismatchError(f"{what} was trained for SAM {trained_for}, but SAM {variant} is loaded; "
                               f"load SAM {trained_for}, or train a model for {variant}")


def choose_sam(requested: str | os.PathLike | None, trained_for: str | None) -> str:
    """The SAM to load: the one asked for, else the one the model was trained for, else :data:`DEFAULT_SAM`."""
    if requested:
        return str(requested)
    return trained_for or DEFAULT_SAM


def infer_variant(state_dict: dict[str, torch.Tensor]) -> str:
    """Name of the SAM variant a state dict belongs to, from its encoder's width and depth."""
    key = "image_encoder.patch_embed.proj.weight"
    if key not in state_dict:
        raise SamCheckpointError(f"not a SAM state dict: it has no {key!r} entry")
    if state_dict[key].ndim != 4:
        raise SamCheckpointError(f"not a SAM state dict: {key} has shape {tuple(state_dict[key].shape)}, not 4D")
    width = int(state_dict[key].shape[0])
    depth = len({k.split(".")[2] for k in state_dict if k.startswith("image_encoder.blocks.")})
    for arch in ARCHITECTURES.values():
        if arch.embed_dim == width and arch.depth == depth:
            return arch.name
    raise SamCheckpointError(f"unknown SAM variant: image encoder of width {width} and depth {depth}")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    from ..io.weights import WeightsFileError, read_state_dict

    try:
        return read_state_dict(path, "SAM checkpoint", mmap=True)
    except WeightsFileError as exc:
        raise SamCheckpointError(str(exc)) from None


def _shape_mismatches(sam: Sam, state: dict[str, torch.Tensor]) -> list[str]:
    own = sam.state_dict()
    return [f"{k} is {tuple(v.shape)} in the file but {tuple(own[k].shape)} in SAM"
            for k, v in state.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]


def load_sam_checkpoint(path: str | os.PathLike, *, variant: str | None = None) -> Sam:
    """Build the right SAM for the state dict at ``path`` and load it, frozen, in eval mode."""
    path = Path(path)
    state = _read_state_dict(path)
    try:
        found = infer_variant(state)
    except SamCheckpointError as exc:
        raise SamCheckpointError(f"{path} is {exc}") from None
    if variant is not None and variant != found:
        raise SamCheckpointError(f"{path} holds a {found} SAM, not {variant}")
    with no_random_init():  # every weight is replaced next: no random numbers first
        sam = SAM_BUILDERS[found]()
    wrong = _shape_mismatches(sam, state)
    if wrong:
        more = f" (+{len(wrong) - 3} more)" if len(wrong) > 3 else ""
        raise SamCheckpointError(f"{path} does not fit SAM {found}: " + "; ".join(wrong[:3]) + more)
    result = sam.load_state_dict(state, strict=False, assign=True)  # the (memory-mapped) tensors themselves
    if result.missing_keys or result.unexpected_keys:
        raise SamCheckpointError(
            f"{path} does not fit SAM {found}: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )
    set_sam_identity(sam, SamIdentity(found, path))
    return freeze(sam)


def freeze(sam: Sam) -> Sam:
    """Switch off gradients for every SAM parameter and put it in eval mode."""
    for param in sam.parameters():
        param.requires_grad_(False)
    return sam.eval()


def tiny_checkpoint(directory: str | os.PathLike | None = None) -> Path:
    """Path of the tiny SAM's state dict, written (deterministically, atomically) on first use."""
    from ..paths import checkpoint_dir

    directory = Path(directory) if directory is not None else checkpoint_dir()
    path = directory / f"sam_tiny_r{TINY_REVISION}.pth"
    if not path.exists():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_SEED)
            sam = _build_tiny()
        with atomic_path(path) as tmp:
            torch.save(sam.state_dict(), tmp)
    return path


def resolve_checkpoint(name_or_path: str | os.PathLike, *, allow_download: bool = True) -> Task[Path]:
    """Find (or download) the checkpoint for a variant name, or check a given path.

    A generator: yields download progress, returns the checkpoint path.
    """
    text = str(name_or_path)
    if text == "tiny":
        return tiny_checkpoint()
    if text in ARCHITECTURES:
        from .download import ensure_checkpoint

        return (yield from ensure_checkpoint(text, allow_download=allow_download))
    path = Path(text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"SAM checkpoint {text!r} is neither a variant name ({', '.join(ARCHITECTURES)}) nor an existing file"
        )
    return path


def load_sam(
    name_or_path: str | os.PathLike = DEFAULT_SAM,
    *,
    device: torch.device | str | None = None,
    allow_download: bool = True,
) -> Task[Sam]:
    """Load a frozen SAM by variant name (``vit_b``, ``vit_l``, ``vit_h``, ``tiny``) or file.

    A generator (download progress, then the model); use
    :func:`napari_autosam.progress.run` to call it synchronously.  Read
    which SAM it is with :func:`sam_identity`.
    """
    from ..device import pick_device

    path = yield from resolve_checkpoint(name_or_path, allow_download=allow_download)
    expected = str(name_or_path) if str(name_or_path) in ARCHITECTURES else None
    sam = load_sam_checkpoint(path, variant=expected)
    return sam.to(pick_device(device))
