"""Which file endings and folders the package reads: the one list every reader and error message uses.

Matched case-insensitively, longest first (``a.ome.tif`` is OME-TIFF, not TIFF).  No imports of
other modules here, so every reader can use it.
"""

from __future__ import annotations

__all__ = ["IMAGE_SUFFIXES", "OPENSLIDE_SUFFIXES", "READABLE_SUFFIXES", "SLIDE_SUFFIXES", "TIFFFILE_SUFFIXES",
           "TIFF_SUFFIXES", "ZARR_SUFFIXES", "accepted_inputs"]

TIFF_SUFFIXES = (".ome.tiff", ".ome.tif", ".tiff", ".tif")
#: Ordinary images (read whole or lazily by tifffile / imageio).
IMAGE_SUFFIXES = TIFF_SUFFIXES + (".png", ".jpg", ".jpeg", ".bmp")
#: Formats only OpenSlide reads here (``.dcm``: one file of a DICOM whole-slide series).
OPENSLIDE_SUFFIXES = (".ndpi", ".scn", ".mrxs", ".vms", ".bif", ".svslide", ".dcm")
#: TIFF-based slides whose pixels tifffile reads (with OpenSlide's metadata where it knows the file).
TIFFFILE_SUFFIXES = (".ome.tiff", ".ome.tif", ".svs", ".tiff", ".tif")
#: Every file ending a slide opens from.
SLIDE_SUFFIXES = OPENSLIDE_SUFFIXES + TIFFFILE_SUFFIXES
ZARR_SUFFIXES = (".ome.zarr", ".zarr")
#: Every file ending the package reads, images and slides (each once).
READABLE_SUFFIXES = tuple(dict.fromkeys(IMAGE_SUFFIXES + SLIDE_SUFFIXES))


def accepted_inputs() -> str:
    """What the readers take, for "unsupported file type" messages."""
    return (f"one of {', '.join(READABLE_SUFFIXES)}, an OME-Zarr folder (.zarr) or a folder of "
            "DICOM whole-slide files (.dcm)")
