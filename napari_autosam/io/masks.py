"""What a mask is: the one check for masks handed over in memory (accepted corrections).

A mask is an ``H×W`` array, one value per pixel: a binary mask (bool or 0/1)
or non-negative integer labels (0 background, 1, 2, … objects).  Float masks
are taken when they hold only whole numbers >= 0; probabilities, negative
labels, NaN and colour images are refused with a message saying what a mask
must be, so that nothing is stored changed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_MASK_RULE = "a mask must be an H×W binary mask (bool or 0/1) or non-negative integer labels"


def check_mask(mask, image_shape: Sequence[int]) -> np.ndarray:
    """The mask as unsigned integer labels, or ValueError saying what a mask must be.

    Parameters
    ----------
    mask : array-like
        ``H×W`` bool, integer labels >= 0, or float holding only whole numbers >= 0.
    image_shape : shape of the image it belongs to (``H×W[×C]``).

    Returns
    -------
    ndarray : ``H×W`` uint8, uint16 or uint32 with the same values.
    """
    mask = np.asarray(mask)
    height_width = tuple(image_shape[:2])
    if mask.ndim == 3 and mask.shape[-1] in (3, 4) and tuple(mask.shape[:2]) == height_width:
        raise ValueError(f"the mask is a colour image of shape {mask.shape}; {_MASK_RULE}")
    if mask.ndim != 2 or tuple(mask.shape) != height_width:
        raise ValueError(f"mask of shape {mask.shape} does not fit the image of shape {tuple(image_shape)}; "
                         f"{_MASK_RULE} of the image's size")
    if mask.dtype == bool:
        return mask.astype(np.uint8)
    if mask.dtype.kind == "f":
        if not np.all(np.isfinite(mask)):
            raise ValueError(f"the mask holds NaN or infinite values; {_MASK_RULE}")
        if not np.array_equal(mask, np.round(mask)):
            raise ValueError(f"the float mask holds fractions (e.g. {_first_fraction(mask)}); {_MASK_RULE} "
                             "(threshold a probability map first)")
    elif mask.dtype.kind not in "iu":
        raise ValueError(f"the mask has dtype {mask.dtype}; {_MASK_RULE}")
    low = mask.min() if mask.size else 0
    top = mask.max() if mask.size else 0
    if low < 0:
        raise ValueError(f"the mask holds negative labels (down to {low}); {_MASK_RULE}")
    if top >= 2**32:
        raise ValueError(f"the mask holds labels up to {top}, more than 2**32 - 1; {_MASK_RULE}")
    dtype = np.uint8 if top <= 255 else np.uint16 if top < 2**16 else np.uint32
    return mask.astype(dtype)


def _first_fraction(mask: np.ndarray) -> float:
    flat = mask.ravel()
    return float(flat[np.flatnonzero(flat != np.round(flat))[0]])
