"""The SAM checkpoints known by name: Meta's official three and SAMs fine-tuned for a domain.

Every entry says where its publisher serves the file, how to check it and
which image-encoder architecture it fills.  The official checkpoints are
checked by size and MD5 (Meta's published figures).  The domain SAMs are
the ones micro-sam's model registry publishes, with its XXH128 checksums
(it publishes no sizes): PathoSAM's histopathology models, micro-sam's
light-microscopy models and MedicoSAM.  MedSAM's ViT-B is shared through a
Google Drive folder only, with no direct address and no checksum: it is
known by name, but its file must be put in the cache by hand.

All of them are state dicts of segment-anything's ``Sam`` module of their
architecture: plain, or wrapped as ``{"model_state": ..., "decoder_state": ...}``
(see :func:`napari_autosam.sam.registry.sam_state`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Where Meta serves the official SAM checkpoints.
DEFAULT_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


@dataclass(frozen=True)
class CheckpointInfo:
    """One SAM checkpoint known by name.

    Attributes
    ----------
    name : str
        What users type (``"vit_b"``, ``"vit_b_histopathology"``).
    filename : str
        The file name in the cache (and on the server for the official ones).
    url : str or None
        The publisher's download address; None when the file can only be
        fetched by hand from ``page``.
    size : int or None
        Exact size in bytes, where published.
    md5 : str or None
        MD5 checksum (32 lower-case hex digits), where published.
    xxh128 : str or None
        XXH128 checksum (32 lower-case hex digits), where published.
    variant : str
        The architecture it fills: ``"vit_b"``, ``"vit_l"`` or ``"vit_h"``.
    description : str
        One line for menus, ``info`` and ``download --help``: what it was trained on.
    page : str or None
        Where a person downloads it when there is no direct address.
    """

    name: str
    filename: str
    url: str | None
    size: int | None
    md5: str | None
    xxh128: str | None = None
    variant: str = ""
    description: str = ""
    page: str | None = None

    @property
    def architecture(self) -> str:
        """The image-encoder variant this checkpoint fills."""
        return self.variant or self.name

    @property
    def checksum(self) -> str | None:
        """``"xxh128:<hex>"`` or ``"md5:<hex>"``: the strongest published check, None without one."""
        if self.xxh128:
            return f"xxh128:{self.xxh128.lower()}"
        return f"md5:{self.md5.lower()}" if self.md5 else None

    @property
    def official(self) -> bool:
        """One of Meta's own checkpoints."""
        return self.name in OFFICIAL_CHECKPOINTS


def _official(name: str, filename: str, size: int, md5: str) -> CheckpointInfo:
    return CheckpointInfo(name=name, filename=filename, url=DEFAULT_BASE_URL + filename, size=size, md5=md5,
                          variant=name, description=f"Meta's SAM {name.replace('_', '-').upper()}, natural images")


#: The official SAM checkpoints by variant name (figures from docs/checkpoints.md).
OFFICIAL_CHECKPOINTS: dict[str, CheckpointInfo] = {
    info.name: info
    for info in (
        _official("vit_b", "sam_vit_b_01ec64.pth", 375_042_383, "01ec64d29a2fca3f0661936605ae66f8"),
        _official("vit_l", "sam_vit_l_0b3195.pth", 1_249_524_607, "0b3195507c641ddb6910d2bb5adee89c"),
        _official("vit_h", "sam_vit_h_4b8939.pth", 2_564_550_879, "4b8939a88964f0f4ff5f5b2642c598a6"),
    )
}

_OWNCLOUD = "https://owncloud.gwdg.de/index.php/s/{}/download"
_BIOIMAGEIO = "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/{}"


def _domain(name: str, url: str | None, xxh128: str | None, description: str, *, filename: str | None = None,
            page: str | None = None) -> CheckpointInfo:
    return CheckpointInfo(name=name, filename=filename or f"{name}.pt", url=url, size=None, md5=None,
                          xxh128=xxh128, variant=name[:5] if name.startswith("vit_") else "vit_b",
                          description=description, page=page)


#: SAMs fine-tuned for a domain, by the names their publishers use (addresses and XXH128 checksums
#: as micro-sam's model registry lists them).
DOMAIN_CHECKPOINTS: dict[str, CheckpointInfo] = {
    info.name: info
    for info in (
        _domain("vit_b_histopathology", _OWNCLOUD.format("sBB4H8CTmIoBZsQ"), "ffd1a2cd84570458b257bd95fdd8f974",
                "PathoSAM ViT-B: nuclei in H&E and other histopathology stains"),
        _domain("vit_l_histopathology", _OWNCLOUD.format("IZgnn1cpBq2PHod"), "b591833c89754271023e901281dee3f2",
                "PathoSAM ViT-L: nuclei in H&E and other histopathology stains"),
        _domain("vit_h_histopathology", _OWNCLOUD.format("L7AcvVz7DoWJ2RZ"), "bd1856dafc156a43fb3aa705f1a6e92e",
                "PathoSAM ViT-H: nuclei in H&E and other histopathology stains"),
        _domain("vit_b_lm", _BIOIMAGEIO.format("diplomatic-bug/1.2/files/vit_b.pt"), "fe9252a29f3f4ea53c15a06de471e186",
                "micro-sam ViT-B light microscopy: cells and nuclei in fluorescence and label-free images"),
        _domain("vit_l_lm", _BIOIMAGEIO.format("idealistic-rat/1.2/files/vit_l.pt"), "017f20677997d628426dec80a8018f9d",
                "micro-sam ViT-L light microscopy: cells and nuclei in fluorescence and label-free images"),
        _domain("vit_b_medical_imaging", _OWNCLOUD.format("f5Ol4FrjPQWfjUF"), "40169f1e3c03a4b67bff58249c176d92",
                "MedicoSAM ViT-B: CT, MRI, X-ray, ultrasound and other medical images"),
        _domain("medsam_vit_b", None, None,
                "MedSAM ViT-B: medical images with box prompts (download by hand: no direct address or checksum)",
                filename="medsam_vit_b.pth",
                page="https://drive.google.com/drive/folders/1ETWmi4AiniJeWOt6HAsYgTjYv_fkgzoN"),
    )
}


def checkpoint_names() -> list[str]:
    """Every name a SAM can be loaded by (the tiny test SAM aside), official ones first."""
    return list(OFFICIAL_CHECKPOINTS) + list(DOMAIN_CHECKPOINTS)


def checkpoint_info(name: str) -> CheckpointInfo:
    """The :class:`CheckpointInfo` called ``name``; ValueError naming the valid ones otherwise."""
    info = OFFICIAL_CHECKPOINTS.get(name) or DOMAIN_CHECKPOINTS.get(name)
    if info is None:
        raise ValueError(f"unknown SAM checkpoint {name!r}; valid names are: {', '.join(checkpoint_names())}")
    return info


def named_checkpoint(path: str | os.PathLike | None) -> CheckpointInfo | None:
    """The known checkpoint whose cache file name ``path`` has (None for any other file)."""
    if path is None:
        return None
    filename = Path(path).name
    for info in (*OFFICIAL_CHECKPOINTS.values(), *DOMAIN_CHECKPOINTS.values()):
        if info.filename == filename:
            return info
    return None
