"""DICOM whole-slide images: a folder of ``.dcm`` instances, or one of its files, opened through OpenSlide.

OpenSlide 4 reads a DICOM WSI (VL Whole Slide Microscopy) given any one
``.dcm`` file of the series: it finds the series' other files (the pyramid
levels) in the same folder.  Here a folder is accepted too, by picking
such a file for OpenSlide.  No napari or Qt here.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DICOM_SUFFIX", "dicom_files", "dicom_instance", "is_dicom_folder"]

DICOM_SUFFIX = ".dcm"


def dicom_files(folder: Path) -> list[Path]:
    """The ``.dcm`` files directly in ``folder`` (sorted; hidden files skipped)."""
    try:
        return sorted(p for p in Path(folder).iterdir()
                      if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(DICOM_SUFFIX))
    except OSError:
        return []


def is_dicom_folder(path: Path) -> bool:
    """A folder holding ``.dcm`` files."""
    return Path(path).is_dir() and bool(dicom_files(path))


def dicom_instance(folder: Path) -> Path | None:
    """A file of the folder's whole-slide series that OpenSlide recognises (the first in name order), or None."""
    import openslide

    for path in dicom_files(folder):
        try:
            if openslide.OpenSlide.detect_format(str(path)) == "dicom":
                return path
        except Exception:  # noqa: BLE001  an unreadable instance: try the next
            continue
    return None
