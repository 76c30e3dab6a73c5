"""Where h(g(I)) and AutoSAM disagree, and their Dice per plane (for the compare view).

No napari or Qt here; the widget only shows what these return.
"""

from __future__ import annotations

import numpy as np

from ..losses import dice

#: Values of a disagreement map.
AGREE, ONLY_AUTOSAM, ONLY_H = 0, 1, 2


def disagreement(autosam, h) -> np.ndarray:
    """``ONLY_AUTOSAM`` (1) where only AutoSAM has foreground, ``ONLY_H`` (2) where only h(g(I)) has, else 0.

    Parameters
    ----------
    autosam, h : masks or label images of one shape (anything > 0 is foreground)

    Returns
    -------
    uint8 array of that shape
    """
    a, b = np.asarray(autosam) > 0, np.asarray(h) > 0
    if a.shape != b.shape:
        raise ValueError(f"masks differ in shape: {a.shape} vs {b.shape}")
    out = np.zeros(a.shape, np.uint8)
    out[a & ~b] = ONLY_AUTOSAM
    out[b & ~a] = ONLY_H
    return out


def per_plane_dice(autosam, h, *, stack: bool) -> list[float]:
    """Dice of the two masks, one value per slice of a ``Z×H×W`` stack, or one value for an ``H×W`` plane."""
    if not stack:
        return [dice(autosam, h)]
    return [dice(autosam[z], h[z]) for z in range(np.shape(autosam)[0])]
