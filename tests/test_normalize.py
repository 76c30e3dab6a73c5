import json

import numpy as np
import pytest

from napari_autosam.io.normalize import Normalization, compute_normalization, image_kind, to_rgb_uint8


@pytest.fixture
def ramp() -> np.ndarray:
    """A 2D float ramp from 0 to 1000 (exclusive of rounding)."""
    return np.linspace(0, 1000, 64 * 48).reshape(64, 48)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.int64, np.float32, np.float64])
def test_grayscale_of_any_dtype(dtype):
    rng = np.random.default_rng(0)
    image = (rng.random((40, 30)) * 200 - (50 if np.dtype(dtype).kind in "if" else 0)).astype(dtype)
    rgb, norm = to_rgb_uint8(image)
    assert rgb.shape == (40, 30, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
    assert rgb.min() == 0 and rgb.max() == 255
    assert norm.percentiles == (0.5, 99.5) and norm.channels is None
    assert norm.low == pytest.approx(np.percentile(image, 0.5))
    assert norm.high == pytest.approx(np.percentile(image, 99.5))


def test_bool_maps_to_0_and_255():
    image = np.zeros((10, 10), bool)
    image[2, 3] = True
    rgb, norm = to_rgb_uint8(image)
    assert rgb[2, 3].tolist() == [255, 255, 255] and rgb.sum() == 3 * 255
    assert (norm.low, norm.high) == (0.0, 1.0)


def test_percentiles_are_recorded_and_reused_for_tiles(ramp):
    full, norm = to_rgb_uint8(ramp, percentiles=(2, 98))
    assert norm.percentiles == (2.0, 98.0)
    assert norm.low == pytest.approx(np.percentile(ramp, 2))
    tile, reused = to_rgb_uint8(ramp[10:20, 5:25], normalization=norm)
    assert reused is norm
    np.testing.assert_array_equal(tile, full[10:20, 5:25])
    own_scaling, _ = to_rgb_uint8(ramp[10:20, 5:25])
    assert not np.array_equal(own_scaling, tile)


def test_normalization_round_trips_through_json():
    for norm in [
        Normalization(1.5, 9.0, (1.0, 99.0), None),
        Normalization((0.0, 2.0), (10.0, 20.0), (0.5, 99.5), (2, 0)),
        Normalization.identity(),
    ]:
        assert Normalization.from_dict(json.loads(json.dumps(norm.to_dict()))) == norm


def test_constant_image_gives_zeros():
    rgb, norm = to_rgb_uint8(np.full((8, 8), 42, np.uint16))
    assert not rgb.any()
    assert norm.is_degenerate


def test_nan_and_inf_become_zero(ramp):
    image = ramp.copy()
    image[0, 0], image[1, 1], image[2, 2] = np.nan, np.inf, -np.inf
    rgb, norm = to_rgb_uint8(image)
    assert np.isfinite(norm.low) and np.isfinite(norm.high)
    assert rgb[0, 0].tolist() == rgb[1, 1].tolist() == rgb[2, 2].tolist() == [0, 0, 0]
    assert rgb[-1, -1, 0] == 255


def test_all_nan_gives_zeros_and_a_degenerate_normalization():
    rgb, norm = to_rgb_uint8(np.full((5, 7), np.nan, np.float32))
    assert rgb.shape == (5, 7, 3) and not rgb.any()
    assert norm.is_degenerate


def test_sparse_image_is_not_degenerate():
    image = np.zeros((100, 100), np.uint16)
    image[5, 5] = 1000  # fewer bright pixels than the top 0.5 %
    rgb, norm = to_rgb_uint8(image)
    assert not norm.is_degenerate and rgb[5, 5, 0] == 255


def test_one_pixel_image():
    rgb, norm = to_rgb_uint8(np.array([[7.0]]))
    assert rgb.shape == (1, 1, 3) and not rgb.any()


@pytest.mark.parametrize("shape", [(0, 5), (5, 0, 3), (0,)])
def test_empty_image_is_rejected(shape):
    with pytest.raises(ValueError, match="empty"):
        to_rgb_uint8(np.zeros(shape))


@pytest.mark.parametrize("shape", [(10,), (2, 3, 10, 10), (1, 2, 3, 10, 10)])
def test_unsupported_ndim_is_rejected(shape):
    with pytest.raises(ValueError, match="2D"):
        to_rgb_uint8(np.zeros(shape))


def test_uint8_rgb_passes_through_unchanged():
    image = np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    rgb, norm = to_rgb_uint8(image)
    np.testing.assert_array_equal(rgb, image)
    assert not np.shares_memory(rgb, image)
    assert norm == Normalization.identity()


def test_rgba_drops_alpha():
    image = np.random.default_rng(2).integers(0, 256, (12, 10, 4), dtype=np.uint8)
    rgb, _ = to_rgb_uint8(image)
    np.testing.assert_array_equal(rgb, image[..., :3])


def test_float_rgb_in_unit_range_keeps_colours():
    image = np.zeros((4, 4, 3), np.float32)
    image[..., 0] = 1.0
    image[..., 1] = 0.5
    rgb, norm = to_rgb_uint8(image)
    assert rgb[0, 0].tolist() == [255, 128, 0]
    assert (norm.low, norm.high, norm.channels) == (0.0, 1.0, (0, 1, 2))


@pytest.mark.parametrize("channels_first", [True, False])
def test_multichannel_single_channel_and_rgb_mapping(channels_first):
    rng = np.random.default_rng(3)
    channels = np.stack([rng.random((20, 20)) * scale for scale in (1, 100, 10000, 5, 7)])
    image = channels if channels_first else np.moveaxis(channels, 0, -1)
    axis = 0 if channels_first else -1
    gray, norm = to_rgb_uint8(image, channel_axis=axis, channels=(2,))
    expected, _ = to_rgb_uint8(channels[2])
    np.testing.assert_array_equal(gray, expected)
    assert norm.channels == (2,)
    mapped, norm = to_rgb_uint8(image, channel_axis=axis, channels=(4, 1, 2))
    for out_channel, source in enumerate((4, 1, 2)):
        np.testing.assert_array_equal(mapped[..., out_channel], to_rgb_uint8(channels[source])[0][..., 0])
    assert len(norm.low) == 3 and norm.channels == (4, 1, 2)


def test_multichannel_layout_is_inferred():
    rng = np.random.default_rng(4)
    two = rng.random((2, 16, 16))
    rgb, norm = to_rgb_uint8(two)  # (C, Y, X): channel 0 by default
    assert norm.channels == (0,)
    rg, norm = to_rgb_uint8(np.moveaxis(two, 0, -1), channels=(0, 1))  # (Y, X, C)
    assert not rg[..., 2].any() and rg[..., 0].any() and rg[..., 1].any()
    seven = rng.random((16, 16, 7))
    _, norm = to_rgb_uint8(seven, channels=(6,))
    assert norm.channels == (6,)


def test_channels_reused_from_normalization():
    image = np.random.default_rng(5).random((3, 8, 8))
    first, norm = to_rgb_uint8(image, channels=(2, 0))
    again, _ = to_rgb_uint8(image, normalization=norm)
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"channels": (5,)}, "out of range"), ({"channels": (0, 1, 2, 0)}, "1 to 3"), ({"channel_axis": 3}, "out of range")],
)
def test_bad_channel_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        to_rgb_uint8(np.zeros((4, 16, 16)), **kwargs)


def test_stack_is_rejected_but_can_be_normalized_as_a_whole():
    stack = np.random.default_rng(6).random((6, 16, 16))
    with pytest.raises(ValueError, match="stack"):
        to_rgb_uint8(stack)
    norm = compute_normalization(stack)
    slice_rgb, _ = to_rgb_uint8(stack[2], normalization=norm)
    assert slice_rgb.shape == (16, 16, 3)
    assert norm.low == pytest.approx(np.percentile(stack, 0.5))


class RecordingArray:
    """A lazy-array stand-in that records which indices were read."""

    def __init__(self, data):
        self.data, self.keys = data, []
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim

    def __getitem__(self, key):
        self.keys.append(key)
        return self.data[key]

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole array was loaded")


def test_compute_normalization_reads_only_a_strided_sample():
    data = np.random.default_rng(7).normal(100, 10, (2000, 1500)).astype(np.float32)
    lazy = RecordingArray(data)
    norm = compute_normalization(lazy, max_samples=10_000)
    (key,) = lazy.keys
    assert all(isinstance(k, slice) and k.step > 1 for k in key)
    sample = data[key]
    assert sample.size <= 10_000
    assert norm.low == pytest.approx(np.percentile(sample, 0.5))
    assert norm.low == pytest.approx(np.percentile(data, 0.5), rel=0.02)


def test_huge_float_values_are_scaled_not_dropped():
    image = np.array([[0.0, 1e300], [2e300, 3e300]])
    rgb, _ = to_rgb_uint8(image, percentiles=(0, 100))
    assert rgb[..., 0].tolist() == [[0, 85], [170, 255]]


@pytest.mark.parametrize(
    ("shape", "kind"),
    [
        ((64, 64), "2d"),
        ((1, 1), "2d"),
        ((64, 64, 3), "rgb"),
        ((64, 64, 4), "rgba"),
        ((3, 64, 64), "multichannel"),
        ((2, 64, 64), "multichannel"),
        ((64, 64, 2), "multichannel"),
        ((64, 64, 9), "multichannel"),
        ((5, 64, 64), "stack"),
        ((30, 64, 64), "stack"),
        ((30, 64, 64, 3), "stack_rgb"),
        ((30, 64, 64, 2), "stack_rgb"),
    ],
)
def test_image_kind(shape, kind):
    assert image_kind(shape, np.uint16) == kind


@pytest.mark.parametrize(
    ("shape", "dtype"), [((64,), np.uint8), ((2, 3, 64, 64), np.uint8), ((1, 2, 3, 8, 8), np.uint8), ((8, 8), complex)]
)
def test_image_kind_rejects_unsupported(shape, dtype):
    with pytest.raises(ValueError):
        image_kind(shape, dtype)
