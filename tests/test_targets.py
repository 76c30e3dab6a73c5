"""Training targets and mask prompts in SAM's padded frame: centre-aligned, soft, no shift."""

import numpy as np
import torch

from napari_autosam.losses import dice_iou
from napari_autosam.sam.embedding import Geometry, frame_to_original, mask_to_padded_frame


def _nuclei(size: int, radius: float, count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    mask = np.zeros((size, size), bool)
    for cy, cx in rng.uniform(radius, size - radius, (count, 2)):
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return mask


def test_radius_8_nuclei_at_1000_survive_the_round_trip_through_the_256_frame():
    mask = _nuclei(1000, 8, 300)
    framed = mask_to_padded_frame(mask)
    back = frame_to_original(framed[None], Geometry(1000, 1000))[0, 0]  # the way predictions come back
    dice, _ = dice_iou((back >= 0.5).numpy(), mask)
    assert dice >= 0.95


def test_targets_are_soft_area_fractions_without_a_shift():
    mask = np.zeros((1000, 1000), bool)
    mask[400:600, 300:500] = True
    framed = mask_to_padded_frame(mask)[0]
    assert framed.dtype == torch.float32 and framed.min() == 0.0 and framed.max() == 1.0
    assert ((framed > 0) & (framed < 1)).any()  # boundary pixels hold partial coverage
    # area is preserved and the centre of mass stays where it was (scaled by 256/1000)
    scale = 256 / 1000
    assert abs(float(framed.sum()) - mask.sum() * scale**2) < 1.0
    ys, xs = torch.meshgrid(torch.arange(256) + 0.5, torch.arange(256) + 0.5, indexing="ij")
    cy = float((framed * ys).sum() / framed.sum()) / scale
    cx = float((framed * xs).sum() / framed.sum()) / scale
    assert abs(cy - 500) < 0.5 and abs(cx - 400) < 0.5


def test_hard_targets_threshold_the_fraction_and_small_masks_are_enlarged_centred():
    mask = np.zeros((1000, 1000), bool)
    mask[400:600, 300:500] = True
    hard = mask_to_padded_frame(mask, soft=False)
    assert set(hard.unique().tolist()) <= {0.0, 1.0}
    small = np.zeros((64, 32), bool)
    small[16:48, 8:24] = True
    up = mask_to_padded_frame(small)[0]  # 64×32 → 256×128 inside the frame, padding 0 on the right
    assert up.shape == (256, 256) and up[:, 128:].sum() == 0
    cols = up.sum(0)[:128]
    assert torch.allclose(cols, cols.flip(0), atol=1e-4)  # a centred object stays centred
