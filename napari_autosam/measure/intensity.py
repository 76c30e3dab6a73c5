"""Intensity and confidence columns of the objects of one block.

Brightfield H&E (8-bit RGB) is measured as stain optical densities: each
pixel's absorbance ``OD = -log10(I / 255)`` (``I`` at least 1) per RGB
channel is unmixed into haematoxylin, eosin and a residual with
scikit-image's Ruifrok-Johnston matrix (``skimage.color.hed_from_rgb``), the
colour deconvolution of ``skimage.color.rgb2hed`` in absorbance units.
Other images give the mean and SD of each channel as stored.  No napari or
Qt here.
"""

from __future__ import annotations

import numpy as np

from .objects import Groups

#: How pixels are turned into intensity columns: "auto" (H&E for 8-bit RGB, else channels), "hed", "channels".
STAINS = ("auto", "hed", "channels")


def stain_for(image_shape: tuple[int, ...], dtype, stain: str = "auto") -> str:
    """The stain mode for an image (``Y×X`` or ``Y×X×C``): "hed" or "channels"."""
    if stain not in STAINS:
        raise ValueError(f"stain must be one of {', '.join(STAINS)}, got {stain!r}")
    rgb = len(image_shape) == 3 and image_shape[-1] in (3, 4) and np.dtype(dtype) == np.uint8
    if stain == "hed" and not rgb:
        raise ValueError(f"H&E optical densities need an 8-bit RGB image, got {np.dtype(dtype)} {tuple(image_shape)}")
    return "hed" if stain == "hed" or (stain == "auto" and rgb) else "channels"


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Absorbance ``-log10(I / 255)`` of 8-bit values (``I`` clipped to ≥ 1, so at most 2.41)."""
    return -np.log10(np.maximum(rgb.astype(np.float64), 1.0) / 255.0)


def hed_densities(rgb: np.ndarray) -> np.ndarray:
    """``(N, 3)`` haematoxylin, eosin and residual optical densities of ``(N, 3)`` 8-bit RGB pixels."""
    from skimage.color import hed_from_rgb

    return optical_density(rgb) @ hed_from_rgb


def intensity_columns(groups: Groups, image: np.ndarray, stain: str) -> dict[str, np.ndarray]:
    """Mean and SD per object of the stains (``stain="hed"``) or of each channel of ``image``.

    ``image`` is the block's ``H×W`` or ``H×W×C`` pixels, aligned with the labels.
    """
    pixels = image.reshape(image.shape[0] * image.shape[1], -1)[groups.flat]
    if stain == "hed":
        densities = hed_densities(pixels[:, :3])
        columns = {}
        for k, name in ((0, "hematoxylin_od"), (1, "eosin_od")):
            columns[f"{name}_mean"], columns[f"{name}_sd"] = groups.mean_sd(densities[:, k])
        return columns
    mean, sd = groups.mean_sd(pixels.astype(np.float64))
    columns = {}
    for c in range(pixels.shape[1]):
        columns[f"channel{c}_mean"], columns[f"channel{c}_sd"] = mean[:, c], sd[:, c]
    return columns


def confidence_columns(groups: Groups, probability: np.ndarray | None = None,
                       h_probability: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """``confidence``: mean AutoSAM probability over the object; ``h_agreement``: share of its pixels h calls foreground."""
    columns = {}
    if probability is not None:
        columns["confidence"] = groups.means(probability.ravel()[groups.flat].astype(np.float64))
    if h_probability is not None:
        columns["h_agreement"] = groups.means((h_probability.ravel()[groups.flat] >= 0.5).astype(np.float64))
    return columns


def majority_class(groups: Groups, classes: np.ndarray) -> np.ndarray:
    """The most frequent value of ``classes`` (an ``H×W`` class-id block) over each object (ties: the smaller id)."""
    values = classes.ravel()[groups.flat].astype(np.int64)
    if not len(values):
        return np.zeros(0, np.int64)
    k = int(values.max()) + 1
    index = np.repeat(np.arange(len(groups.labels)), groups.counts)
    votes = np.bincount(index * k + values, minlength=len(groups.labels) * k).reshape(len(groups.labels), k)
    return votes.argmax(axis=1)
