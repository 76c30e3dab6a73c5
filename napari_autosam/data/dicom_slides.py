"""Write a small DICOM whole-slide image (VL Whole Slide Microscopy), for tests of the DICOM reader.

One ``.dcm`` per pyramid level in one folder, all of one series: tiled
(``TILED_FULL``), uncompressed RGB, pixel spacing in the shared functional
groups.  Written with pydicom (the ``test`` extra); OpenSlide reads it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .synthetic_slides import pyramid

__all__ = ["write_dicom_wsi"]

#: VL Whole Slide Microscopy Image Storage.
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"


def _tiles(level: np.ndarray, tile: int) -> tuple[bytes, int]:
    """The level's tiles row by row (edge tiles padded with white), as one byte string, and their count."""
    height, width = level.shape[:2]
    rows, cols = -(-height // tile), -(-width // tile)
    padded = np.full((rows * tile, cols * tile, 3), 255, np.uint8)
    padded[:height, :width] = level
    frames = padded.reshape(rows, tile, cols, tile, 3).swapaxes(1, 2).reshape(rows * cols, tile, tile, 3)
    return frames.tobytes(), rows * cols


def _level_dataset(level: np.ndarray, index: int, tile: int, mpp: float, ids: dict):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    height, width = level.shape[:2]
    pixels, frames = _tiles(level, tile)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = WSI_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = WSI_SOP_CLASS, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = ids["study"], ids["series"]
    ds.FrameOfReferenceUID = ids["frame"]
    ds.Modality, ds.PatientName, ds.PatientID = "SM", "Synthetic^Slide", "SYNTH-1"
    ds.ContainerIdentifier, ds.SeriesNumber, ds.InstanceNumber = "SYNTH-1", 1, index + 1
    ds.ImageType = ["ORIGINAL" if index == 0 else "DERIVED", "PRIMARY", "VOLUME", "NONE" if index == 0 else "RESAMPLED"]
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.TotalPixelMatrixRows, ds.TotalPixelMatrixColumns = height, width
    ds.TotalPixelMatrixFocalPlanes = 1
    ds.NumberOfFocalPlanes, ds.NumberOfOpticalPaths = 1, 1
    ds.Rows, ds.Columns, ds.NumberOfFrames = tile, tile, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.ImagedVolumeWidth, ds.ImagedVolumeHeight = width * mpp * 1e-3, height * mpp * 1e-3
    spacing = mpp * 1e-3  # mm per pixel of this level
    measures = Dataset()
    measures.PixelSpacing = [spacing, spacing]
    measures.SliceThickness = 0.001
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    path_item = Dataset()
    path_item.OpticalPathIdentifier = "1"
    ds.OpticalPathSequence = Sequence([path_item])
    ds.PixelData = pixels
    return ds


def write_dicom_wsi(folder: str | os.PathLike, image: np.ndarray, *, downsamples=(4,), tile: int = 256,
                    mpp: float = 0.25) -> list[Path]:
    """Write ``image`` (``H×W×3`` uint8) and its block-mean levels as a DICOM WSI series; the files, level 0 first.

    ``mpp`` is level 0's µm per pixel; each level's pixel spacing follows its downsample.
    """
    from pydicom.uid import generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = {"study": generate_uid(), "series": generate_uid(), "frame": generate_uid()}
    levels = pyramid(image, downsamples)
    paths = []
    for index, level in enumerate(levels):
        factor = image.shape[1] / level.shape[1]
        ds = _level_dataset(level, index, tile, mpp * factor, ids)
        path = folder / f"level-{index}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
