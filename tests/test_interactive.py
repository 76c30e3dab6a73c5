"""SAM prompts in plane coordinates (inference/interactive.py), the compare numbers, and the one channel guess."""

from __future__ import annotations

import numpy as np
import pytest

from napari_autosam.inference.agreement import ONLY_AUTOSAM, ONLY_H, disagreement, per_plane_dice
from napari_autosam.inference.inputs import image_layout
from napari_autosam.inference.interactive import prompt_in_window, prompt_window, window_for
from napari_autosam.io.normalize import guess_channel_axis


def test_window_is_the_tile_whose_core_holds_the_anchor():
    assert window_for((300, 400), (10, 10), None, 32) == (0, 300, 0, 400)
    y0, y1, x0, x1 = window_for((300, 400), (250, 390), 128, 32)
    from napari_autosam.inference.tiling import segmentation_tiles, stretched

    assert y0 <= 250 < y1 and x0 <= 390 < x1 and y1 - y0 <= stretched(128) and x1 - x0 <= stretched(128)
    assert (y0, y1, x0, x1) in [t.window for t in segmentation_tiles((300, 400), 128, 32)], "the segmenter's own tile"


def test_prompt_window_reads_one_window_of_one_plane_and_converts_coordinates():
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 4000, (3, 6, 200, 240), dtype=np.uint16).transpose(1, 2, 3, 0)  # Z, Y, X, C
    layout = image_layout(stack)
    assert layout.is_stack and layout.channel_axis == 3
    window = prompt_window(stack, layout, 4, (150, 200), tile=128, overlap=32)
    y0, y1, x0, x1 = window.window
    assert window.z == 4 and window.rgb.shape == (y1 - y0, x1 - x0, 3) and window.rgb.dtype == np.uint8
    assert window.contains(150, 200)
    kwargs = window.to_window(points_yx=[(150, 200)], box_yxyx=(140, 190, 160, 210))
    np.testing.assert_allclose(kwargs["points"], [[200 - x0, 150 - y0]])  # (x, y) in the window
    assert kwargs["box"] == (190 - x0, 140 - y0, 210 - x0, 160 - y0)
    with pytest.raises(ValueError, match="slice 6"):
        prompt_window(stack, layout, 6, (0, 0))


def test_prompt_in_window_returns_a_mask_of_the_window(tiny_sam):
    from napari_autosam.data.synthetic import make_nuclei_image
    from napari_autosam.inference import Segmenter

    image = make_nuclei_image((96, 128), seed=1, stain="he")[0]
    layout = image_layout(image)
    window = prompt_window(image, layout, 0, (40, 60))
    mask = prompt_in_window(Segmenter(tiny_sam), window, points_yx=[(40, 60), (10, 10)], labels=[1, 0])
    assert mask.shape == (96, 128) and mask.dtype == bool


def test_disagreement_and_per_plane_dice():
    a = np.zeros((2, 4, 4), np.uint8)
    h = np.zeros_like(a)
    a[0, :2] = 1
    h[0, 1:3] = 1
    marks = disagreement(a, h)
    assert (marks[0, 0] == ONLY_AUTOSAM).all() and (marks[0, 2] == ONLY_H).all() and not marks[0, 1].any()
    assert per_plane_dice(a, h, stack=True) == [pytest.approx(0.5), 1.0]  # empty slice: they agree
    assert per_plane_dice(a[0], h[0], stack=False) == [pytest.approx(0.5)]


@pytest.mark.parametrize("shape, axis", [((64, 64), None), ((64, 64, 3), 2), ((3, 64, 64), 0), ((64, 64, 6), 2),
                                         ((8, 64, 64), None), ((5, 64, 64, 3), 3)])
def test_the_layout_and_the_normalisation_share_one_channel_guess(shape, axis):
    assert guess_channel_axis(shape) == axis
    assert image_layout(np.zeros(shape, np.uint8)).channel_axis == axis
