"""The Segmenter on every input kind, embedding reuse, interactive prompts and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from napari_autosam.data.synthetic import make_nuclei_image, make_nuclei_stack
from napari_autosam.inference import SegmentationResult, Segmenter, default_model
from napari_autosam.inference.testing import threshold_model
from napari_autosam.io.normalize import Normalization, compute_normalization, to_rgb_uint8
from napari_autosam.losses import dice_iou
from napari_autosam.progress import CancelToken, Progress, run
from napari_autosam.sam.cache import EmbeddingCache

pytestmark = pytest.mark.usefixtures("own_cache")


@pytest.fixture(scope="module")
def seg(sam):
    """A segmenter whose g and h cost nothing (their answer is known); the input handling is what is tested."""
    return Segmenter(sam, threshold_model(0.45))


@pytest.fixture(scope="module")
def default_cache(sam):
    """Embeddings shared by the tests of the untrained default model."""
    return EmbeddingCache(sam)


@pytest.fixture(scope="module")
def gray():
    return make_nuclei_image((96, 128), seed=2)[0]  # uint16 fluorescence


def check_result(result: SegmentationResult, shape):
    assert result.autosam_prob.shape == result.autosam_mask.shape == result.h_prob.shape == shape
    assert result.autosam_prob.dtype == result.h_prob.dtype == np.float32
    assert result.autosam_mask.dtype == result.h_mask.dtype == np.uint8
    for prob, mask in ((result.autosam_prob, result.autosam_mask), (result.h_prob, result.h_mask)):
        assert np.isfinite(prob).all() and prob.min() >= 0 and prob.max() <= 1
        np.testing.assert_array_equal(mask, (prob > 0.5).astype(np.uint8))
    planes = [(result.autosam_mask, result.h_mask)] if len(shape) == 2 else zip(result.autosam_mask, result.h_mask)
    expected = [dice_iou(a, h)[0] for a, h in planes]
    np.testing.assert_allclose(result.agreement, expected)
    assert result.instances is None and result.store is None and not result.cancelled


def test_grayscale_uint16_with_progress_and_reproducible_scaling(sam, gray, default_cache):
    seg = Segmenter(sam, cache=default_cache)
    events = []
    result = run(seg.segment(gray), events.append)
    check_result(result, gray.shape)
    assert [e.phase for e in events if e.depth == 0] == ["segment"] and events[-1].step == events[-1].total == 1
    assert [e.phase for e in events if e.depth == 1] == ["encode"], "SAM's encoding is passed on, one level down"
    assert result.untrained and seg.untrained
    norm = result.normalization
    assert norm.percentiles == (0.5, 99.5) and norm.low < norm.high
    assert (norm.low, norm.high) == pytest.approx(tuple(np.percentile(gray, [0.5, 99.5])))
    again = run(seg.segment(gray.astype(np.float64), normalization=Normalization.from_dict(norm.to_dict())))
    np.testing.assert_array_equal(again.autosam_prob, result.autosam_prob)


def test_the_untrained_default_is_the_same_everywhere(sam, gray, default_cache):
    a, b = default_model(), default_model()
    for (name, p), q in zip(a.prompt_generator.state_dict().items(), b.prompt_generator.state_dict().values()):
        assert p.equal(q), name
    assert a.prompt_generator.config == {"name": "hardnet_small", "input_size": 256}
    one = run(Segmenter(sam, cache=default_cache).segment(gray))
    two = run(Segmenter(sam, cache=default_cache).segment(gray))
    np.testing.assert_array_equal(one.autosam_prob, two.autosam_prob)


def test_float_image_with_nans_and_infs(seg, gray):
    image = gray.astype(np.float32) / 1000
    image[:10, :10] = np.nan
    image[20, 20] = np.inf
    result = run(seg.segment(image))
    check_result(result, image.shape)


def test_rgb_and_rgba_give_the_same_masks(seg):
    rgb = make_nuclei_image((80, 100), seed=4, stain="he")[0]
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    a, b = run(seg.segment(rgb)), run(seg.segment(rgba))
    check_result(a, rgb.shape[:2])
    assert a.normalization == Normalization.identity()
    np.testing.assert_array_equal(a.autosam_prob, b.autosam_prob)


def test_multichannel_picks_channels_like_a_plain_image(seg, gray):
    other = np.full_like(gray, 7)
    channels_first = np.stack([other, gray, other])  # (C, Y, X)
    channels_last = np.stack([other, other, other, other, gray], axis=-1)  # (Y, X, C) with C = 5
    plain = run(seg.segment(gray))
    first = run(seg.segment(channels_first, channels=[1]))
    last = run(seg.segment(channels_last, channel_axis=-1, channels=[4]))
    check_result(first, gray.shape)
    np.testing.assert_array_equal(first.autosam_prob, plain.autosam_prob)
    np.testing.assert_array_equal(last.autosam_prob, plain.autosam_prob)
    mapped = run(seg.segment(channels_last, channel_axis=2, channels=[4, 0]))  # gray→R, channel 0→G
    assert mapped.normalization.channels == (4, 0)


def test_stack_is_segmented_slice_by_slice_in_batches(sam):
    stack = make_nuclei_stack(3, (64, 80), seed=1)[0]
    cache = EmbeddingCache(sam)
    seg = Segmenter(sam, threshold_model(0.45), cache=cache, batch_size=2)
    events = []
    result = run(seg.segment(stack, stack=True), events.append)  # 3 slices, not 3 channels
    check_result(result, stack.shape)
    own = [e for e in events if e.depth == 0]
    assert [e.step for e in own] == [2, 3] and own[0].total == 3 and cache.encoded == 3
    assert len(result.agreement) == 3
    one = run(seg.segment(stack[1], normalization=result.normalization))  # slices share the stack's scaling
    np.testing.assert_allclose(one.autosam_prob, result.autosam_prob[1], atol=1e-5)
    assert cache.encoded == 3  # that slice's embedding was cached


def test_stack_with_channels(seg):
    stack = make_nuclei_stack(2, (48, 64), seed=2)[0]
    zyxc = np.stack([stack, stack // 2], axis=-1)
    result = run(seg.segment(zyxc, channels=[0]))
    check_result(result, stack.shape)
    reference = run(seg.segment(stack, stack=True))
    with pytest.raises(ValueError, match="one plane"):
        run(seg.segment(zyxc, stack=False))
    np.testing.assert_array_equal(result.autosam_prob, reference.autosam_prob)


def test_new_model_reuses_the_cached_embeddings(sam):
    image = make_nuclei_image((128, 128), seed=8)[0]  # g's input size divides it: no resampling blur
    cache = EmbeddingCache(sam)
    seg = Segmenter(sam, cache=cache)
    before = run(seg.segment(image))
    assert cache.encoded == 1 and before.untrained
    seg.set_model(threshold_model(0.4, input_size=128))
    assert not seg.untrained
    after = run(seg.segment(image))
    assert cache.encoded == 1  # g and the decoder only
    assert not np.array_equal(before.h_prob, after.h_prob) and not after.untrained
    rgb, _ = to_rgb_uint8(image, normalization=after.normalization)
    np.testing.assert_array_equal(after.h_mask, (rgb.mean(-1) / 255 > 0.4).astype(np.uint8))


def test_a_saved_checkpoint_segments_like_the_model_it_came_from(sam, gray, default_cache, tmp_path):
    from napari_autosam.models.checkpoint import load_checkpoint, save_checkpoint

    model = default_model()
    path = save_checkpoint(tmp_path / "m.safetensors", model.prompt_generator, model.surrogate, sam_variant="tiny")
    loaded = run(Segmenter(sam, load_checkpoint(path), cache=default_cache).segment(gray))
    np.testing.assert_array_equal(loaded.autosam_prob, run(Segmenter(sam, cache=default_cache).segment(gray)).autosam_prob)
    assert not loaded.untrained


def test_segment_region_uses_the_whole_image_scaling(seg, gray):
    region = run(seg.segment_region(gray, (10, 60, 20, 500)))  # clipped to the image
    assert region.autosam_mask.shape == (50, 108)
    assert region.normalization == compute_normalization(gray)
    crop = run(seg.segment(gray[10:60, 20:], normalization=region.normalization))
    np.testing.assert_array_equal(region.autosam_prob, crop.autosam_prob)
    with pytest.raises(ValueError, match="does not overlap"):
        run(seg.segment_region(gray, (200, 300, 0, 10)))


def test_cancel_returns_what_was_done(seg):
    stack = make_nuclei_stack(3, (32, 32), seed=3)[0]
    token = CancelToken()
    task = seg.segment(stack, cancel=token, stack=True)
    assert isinstance(next(task), Progress)
    token.cancel()
    result = run(task)
    assert result.cancelled and result.autosam_prob.shape == stack.shape
    assert result.autosam_prob[1:].max() == 0  # slices not reached stay empty


def test_prompt_uses_the_cached_embedding(sam):
    rgb = make_nuclei_image((64, 96), seed=5, stain="he")[0]
    cache = EmbeddingCache(sam)
    seg = Segmenter(sam, threshold_model(0.45), cache=cache)
    run(seg.segment(rgb))
    mask, score = seg.prompt(rgb, points=[(40, 30)], labels=[1])
    assert mask.shape == rgb.shape[:2] and mask.dtype == bool and isinstance(score, float)
    mask2, _ = seg.prompt(rgb, points=[(40, 30), (10, 10)], labels=[1, 0], box=(20, 10, 70, 50), dense="autosam")
    mask3, _ = seg.prompt(rgb, box=(20, 10, 70, 50), mask_input=mask)
    assert mask2.shape == mask3.shape == rgb.shape[:2]
    assert cache.encoded == 1
    with pytest.raises(ValueError, match="at least one"):
        seg.prompt(rgb)
    with pytest.raises(ValueError, match="uint8"):
        seg.prompt(rgb.astype(float), points=[(1, 1)])
    with pytest.raises(ValueError, match="labels"):
        seg.prompt(rgb, points=[(1, 1), (2, 2)], labels=[1])
    with pytest.raises(ValueError, match="one of them"):
        seg.prompt(rgb, points=[(1, 1)], mask_input=mask, dense="autosam")


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((0, 5)), "empty"),
        (np.zeros(10), "1D"),
        (np.zeros((2, 3, 4, 5, 6)), "5D"),
        (np.zeros((6, 20, 20, 30)), "ambiguous"),
        (np.zeros((8, 8), complex), "dtype"),
        (np.array([["a", "b"], ["c", "d"]]), "dtype"),
    ],
)
def test_bad_inputs_raise_clear_errors(seg, image, match):
    with pytest.raises(ValueError, match=match):
        run(seg.segment(image))


def test_bad_options_raise_clear_errors(seg, gray):
    with pytest.raises(ValueError, match="mode"):
        run(seg.segment(gray, mode="panoptic"))
    with pytest.raises(ValueError, match="channel"):
        run(seg.segment(np.stack([gray] * 5, -1), channel_axis=2, channels=[7]))
    with pytest.raises(ValueError, match="channel_axis"):
        run(seg.segment(gray, channel_axis=0))
    with pytest.raises(ValueError, match="overlap"):
        run(seg.segment(np.zeros((300, 300)) + np.arange(300), tile=100, overlap=100))


@pytest.mark.parametrize(
    "image",
    [np.full((40, 50), np.nan, np.float32), np.full((40, 50), 7, np.uint16), np.ones((1, 1), np.float32)],
    ids=["all-nan", "constant", "one-pixel"],
)
def test_images_without_contrast_give_an_empty_result(seg, image):
    result = run(seg.segment(image, mode="instances"))
    assert result.autosam_mask.shape == image.shape and result.autosam_mask.max() == 0
    assert result.instances.max() == 0 and result.agreement == [1.0]
    assert result.normalization.is_degenerate and "nothing to segment" in result.messages[0]


def test_one_pixel_rgb_image_is_segmented(seg):
    result = run(seg.segment(np.full((1, 1, 3), 200, np.uint8)))
    assert result.autosam_prob.shape == (1, 1)
