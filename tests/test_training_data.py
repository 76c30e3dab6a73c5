"""Training data: loading and checking image/mask pairs, the split, the augmentations, the config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_autosam.data.synthetic import make_nuclei_image, make_nuclei_stack, write_dataset
from napari_autosam.io.images import write_tiff
from napari_autosam.training import (
    Augmentation,
    TrainConfig,
    TrainingDataError,
    load_samples,
    samples_from_arrays,
    split_samples,
)
from napari_autosam.training.augment import D4, apply_d4, color_jitter, normalize_and_pad, random_affine, warp
from napari_autosam.training.prepared import PreparedSet, resize_long_side


def _labels(shape=(40, 48)):
    labels = np.zeros(shape, np.int32)
    labels[5:15, 5:20] = 1
    labels[20:30, 25:40] = 2
    return labels


# --- samples from arrays of every kind -------------------------------------------------


@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(0).integers(0, 4000, (40, 48)).astype(np.uint16),
        np.random.default_rng(1).normal(size=(40, 48)).astype(np.float32),
        np.random.default_rng(2).integers(0, 255, (40, 48, 3)).astype(np.uint8),
        np.random.default_rng(3).integers(0, 255, (40, 48, 4)).astype(np.uint8),
        np.random.default_rng(4).integers(0, 900, (2, 40, 48)).astype(np.uint16),  # channels first
        np.random.default_rng(5).random((40, 48, 6)),  # six channels last, float64
    ],
    ids=["uint16", "float32", "rgb", "rgba", "2ch-first", "6ch-last"],
)
def test_every_plane_kind_becomes_rgb_uint8_with_a_bool_mask(image):
    labels = _labels()
    (sample,) = samples_from_arrays([image], [labels], names=["a"])
    assert sample.image.shape == (40, 48, 3) and sample.image.dtype == np.uint8
    assert sample.mask.dtype == bool
    np.testing.assert_array_equal(sample.mask, labels > 0)  # instance labels count as foreground
    assert sample.image.max() > 0  # really scaled, not blank


def test_rgb_uint8_passes_through_unchanged():
    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3)).astype(np.uint8)
    (sample,) = samples_from_arrays([image], [_labels((32, 32))])
    np.testing.assert_array_equal(sample.image, image)


def test_a_stack_gives_one_sample_per_slice_with_one_shared_scaling():
    stack, labels = make_nuclei_stack(depth=6, shape=(48, 48), seed=3)
    samples = samples_from_arrays([stack], [labels], names=["cells"])
    assert [s.name for s in samples] == [f"cells:z{z:03d}" for z in range(6)]
    assert {s.source for s in samples} == {"cells (array 0)"}
    assert len({s.normalization for s in samples}) == 1
    for z, s in enumerate(samples):
        np.testing.assert_array_equal(s.mask, labels[z] > 0)
    # one scaling: a brighter slice stays brighter after conversion
    raw_means = stack.reshape(6, -1).mean(1)
    rgb_means = np.array([s.image.mean() for s in samples])
    assert np.argmax(raw_means) == np.argmax(rgb_means)


def test_a_short_stack_is_not_mistaken_for_channels():
    stack = np.random.default_rng(0).integers(0, 1000, (3, 40, 48)).astype(np.uint16)
    labels = np.stack([_labels()] * 3)
    samples = samples_from_arrays([stack], [labels])
    assert len(samples) == 3 and samples[0].image.shape == (40, 48, 3)


# --- errors before training ----------------------------------------------------------


def test_mismatched_shapes_name_the_image():
    image = np.zeros((40, 48), np.uint8)
    with pytest.raises(TrainingDataError, match=r"bad_one.*40×48.*\(30, 48\)"):
        samples_from_arrays([image], [np.ones((30, 48), np.uint8)], names=["bad_one"])


def test_nan_pixels_are_an_error_naming_the_image():
    image = np.ones((40, 48), np.float32)
    image[3, 4] = np.nan
    with pytest.raises(TrainingDataError, match="nan_image.*1 NaN"):
        samples_from_arrays([image], [_labels()], names=["nan_image"])


def test_all_masks_empty_is_an_error_but_some_empty_is_fine():
    images = [np.random.default_rng(i).random((40, 48)) for i in range(2)]
    with pytest.raises(TrainingDataError, match="every mask is empty"):
        samples_from_arrays(images, [np.zeros((40, 48), np.uint8)] * 2)
    samples = samples_from_arrays(images, [np.zeros((40, 48), np.uint8), _labels()])
    assert [s.mask.any() for s in samples] == [False, True]


def test_files_pair_by_stem_and_bad_files_are_named(tmp_path):
    images_dir, masks_dir = write_dataset(tmp_path / "ok", 3, (48, 48), seed=1)
    samples = load_samples(images_dir, masks_dir)
    assert [s.name for s in samples] == ["img_000", "img_001", "img_002"]
    assert all(s.mask.any() and s.image.shape == (48, 48, 3) for s in samples)

    (images_dir / "img_003.tif").write_bytes(b"this is not a tiff")
    (masks_dir / "img_003.tif").write_bytes(b"nor is this")
    with pytest.raises(TrainingDataError, match="img_003.tif"):
        load_samples(images_dir, masks_dir)

    image, _ = make_nuclei_image((48, 48), seed=2)
    write_tiff(images_dir / "img_003.tif", image)
    write_tiff(masks_dir / "img_003.tif", np.ones((40, 48), np.uint8))
    with pytest.raises(TrainingDataError, match="img_003.tif"):
        load_samples(images_dir, masks_dir)


def test_images_without_masks_are_listed(tmp_path):
    images_dir, masks_dir = write_dataset(tmp_path, 2, (32, 32), seed=1)
    (masks_dir / "img_001.tif").unlink()
    with pytest.raises(ValueError, match="img_001"):
        load_samples(images_dir, masks_dir)


# --- the validation split ------------------------------------------------------------


def test_split_is_seeded_keeps_one_validation_image_and_keeps_stacks_together():
    images = [np.full((16, 16), i, np.float32) + np.eye(16, dtype=np.float32) for i in range(7)]
    samples = samples_from_arrays(images, [_labels((16, 16))] * 7)
    train, val = split_samples(samples, 0.2, seed=5)
    again_train, again_val = split_samples(samples, 0.2, seed=5)
    assert [s.name for s in val] == [s.name for s in again_val] and len(val) == 1 and len(train) == 6
    assert {s.name for s in train} | {s.name for s in val} == {s.name for s in samples}
    assert len(split_samples(samples[:2], 0.01)[1]) == 1  # at least one
    stack, labels = make_nuclei_stack(depth=5, shape=(32, 32), seed=1)
    mixed = samples_from_arrays([stack, images[0]], [labels, _labels((16, 16))])
    train, val = split_samples(mixed, 0.5, seed=0)
    assert {len(train), len(val)} == {5, 1}  # the five slices stay on one side


# --- augmentations keep g's input, embedding and target aligned ------------------------


def test_d4_variants_are_the_eight_distinct_symmetries():
    a = np.arange(12).reshape(3, 4)
    outs = {name: apply_d4(a, name) for name in D4}
    assert len({o.tobytes() + bytes(o.shape) for o in outs.values()}) == 8
    np.testing.assert_array_equal(outs["rot90"], np.rot90(a))
    np.testing.assert_array_equal(apply_d4(outs["antitranspose"], "antitranspose"), a)


def test_affine_moves_image_and_target_together():
    mask = np.zeros((64, 64), bool)
    mask[10:30, 20:50] = True
    image = np.where(mask[..., None], 200, 20).astype(np.uint8).repeat(3, axis=2)
    g_input = normalize_and_pad(resize_long_side(image, 64), 64)[None]
    target = torch.from_numpy(mask).float()[None, None]
    aug = Augmentation(affine_p=1.0, rotation=20, scale=(0.8, 1.2), translate=0.1)
    theta = random_affine(1, aug, torch.Generator().manual_seed(0))
    moved_image, moved_target = warp(g_input, theta), warp(target, theta, mode="nearest")
    bright = moved_image[0, 0] > 0  # foreground pixels are above SAM's mean colour
    assert not torch.equal(moved_target, target)
    agree = (bright == (moved_target[0, 0] > 0.5)).float().mean()
    assert agree > 0.97
    identity = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]])
    torch.testing.assert_close(warp(g_input, identity), g_input, atol=1e-4, rtol=0)


def test_colour_jitter_changes_colours_within_range_and_none_is_identity():
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (3, 20, 20)).astype(np.uint8))
    gen = torch.Generator().manual_seed(0)
    jittered = color_jitter(image, Augmentation(), gen)
    assert jittered.shape == (3, 20, 20) and 0 <= float(jittered.min()) and float(jittered.max()) <= 255
    assert not torch.allclose(jittered, image.float())
    torch.testing.assert_close(color_jitter(image, Augmentation.none(), gen), image.float())


def test_prepared_batch_shapes_and_unaugmented_input_matches_inference():
    from napari_autosam.sam.embedding import prepare_image

    rgb = np.random.default_rng(0).integers(0, 255, (30, 50, 3)).astype(np.uint8)
    mask = np.zeros((30, 50), bool)
    mask[5:10] = True
    images = [[resize_long_side(rgb, 64)]]
    targets = [[torch.zeros(1, 256, 256, dtype=torch.bool)]]
    embeddings = [[torch.randn(256, 64, 64)]]
    data = PreparedSet([None], ("identity",), 64, images, targets, embeddings)
    g_input, embedding, target = data.batch([0, 0], [0, 0], device=torch.device("cpu"))
    assert g_input.shape == (2, 3, 64, 64) and embedding.shape == (2, 256, 64, 64) and target.shape == (2, 1, 256, 256)
    reference = prepare_image(rgb, 64)[0][0]
    assert float((g_input[0] - reference).abs().max()) < 0.02  # uint8 rounding only


# --- config ---------------------------------------------------------------------------


def test_config_defaults_depend_on_the_device_and_explicit_values_win():
    cpu = TrainConfig().resolved("cpu")
    gpu = TrainConfig().resolved("cuda")
    assert (cpu.generator, cpu.input_size, cpu.batch_size) == ("hardnet_small", 256, 4)
    assert (gpu.generator, gpu.input_size, gpu.batch_size) == ("hardnet85", 512, 10)
    assert cpu.variants == ("identity", "hflip") and len(gpu.variants) == 8
    explicit = TrainConfig(generator="hardnet85", input_size=128, variants=("vflip",)).resolved("cpu")
    assert (explicit.generator, explicit.input_size, explicit.variants) == ("hardnet85", 128, ("identity", "vflip"))
    assert (cpu.lr, cpu.weight_decay) == (3e-4, 1e-5)
    with pytest.raises(ValueError, match="unknown geometric"):
        TrainConfig(variants=("spin",)).resolved("cpu")
