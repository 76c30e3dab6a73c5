"""Depth adapters in SAM's encoder: untrained = SAM, frozen SAM in training, checkpoints, stacks, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from badinput import assert_error, cli
from safetensors import safe_open

from napari_autosam.data.synthetic import make_depth_stack
from napari_autosam.inference import Segmenter, default_model
from napari_autosam.models.autosam import AutoSAM
from napari_autosam.models.checkpoint import ModelCheckpoint, load_checkpoint, save_checkpoint
from napari_autosam.progress import run
from napari_autosam.sam.adapters import (
    ADAPTER_KINDS,
    AdapterMismatchError,
    DepthAdapters,
    DepthWindowError,
    ModalityAdapter,
    adapted_encode,
    build_adapters,
    check_adapters,
    depth_windows,
)
from napari_autosam.sam.embedding import to_padded_frame
from napari_autosam.training import TrainConfig, evaluate, samples_from_arrays, train
from napari_autosam.training.depth_stage import inter_slice_dice, new_optimizer, train_step, volumes_from_arrays


@pytest.fixture(scope="module")
def stack():
    image, mask = make_depth_stack(depth=3, shape=(32, 32), n_tubes=1, n_beads=1, radius_range=(5, 6), seed=3)
    return image, mask


def _depth_model(adapters) -> ModelCheckpoint:
    base = default_model()
    return ModelCheckpoint(base.prompt_generator, base.surrogate, {"sam_variant": "tiny"}, adapters)


@pytest.mark.parametrize("kind", sorted(ADAPTER_KINDS))
def test_untrained_adapters_leave_sam_unchanged(tiny_sam, kind):
    adapters = build_adapters(tiny_sam, kind, depth_window=2)
    pixels = to_padded_frame(torch.rand(2, 3, 24, 32) * 255, 1024)
    with torch.no_grad():
        plain = tiny_sam.image_encoder(pixels)
        adapted = adapted_encode(tiny_sam, adapters, pixels)
    assert adapted.shape == (2, 256, 64, 64)
    torch.testing.assert_close(adapted, plain, rtol=0, atol=1e-6)
    # and the depth adapters do mix slices once they are not zero
    with torch.no_grad():
        for block in adapters.blocks:
            block.up.weight.normal_(0, 0.1)
        mixed = adapted_encode(tiny_sam, adapters, torch.cat([pixels[:1], pixels[1:] * 0]))
        alone = adapted_encode(tiny_sam, adapters, torch.cat([pixels[:1], pixels[1:] * 0 + 1]))
    assert not torch.allclose(mixed[0], alone[0])  # slice 0's embedding depends on slice 1


def test_modality_adapter_starts_as_the_default_channel_view():
    x = torch.rand(1, 5, 4, 4) * 255
    torch.testing.assert_close(ModalityAdapter(5)(x), x[:, :3])
    gray = torch.rand(1, 1, 4, 4) * 255
    torch.testing.assert_close(ModalityAdapter(1)(gray), gray.expand(1, 3, 4, 4))
    with torch.no_grad():
        two = ModalityAdapter(2)(x[:, :2])
    torch.testing.assert_close(two[:, :2], x[:, :2])
    assert float(two[:, 2].abs().max()) == 0.0


def test_depth_windows_cover_every_slice_once_per_window():
    assert depth_windows(10, 5) == [0, 5]
    assert depth_windows(7, 5) == [0, 2]
    assert depth_windows(3, 3) == [0]
    with pytest.raises(DepthWindowError, match="2 slices, fewer than the depth window of 3"):
        depth_windows(2, 3)


def test_a_step_trains_adapters_g_and_h_and_leaves_sam_bitwise_unchanged(tiny_sam, stack):
    from napari_autosam.training.engine import initial_model

    start = initial_model(TrainConfig(generator="hardnet_small", input_size=64), device="cpu")
    model = AutoSAM(tiny_sam, start.prompt_generator, start.surrogate)
    adapters = build_adapters(tiny_sam, "depth_mlp", depth_window=2)
    volume = volumes_from_arrays([stack[0]], [stack[1]])[0]
    sam_before = {k: v.clone() for k, v in tiny_sam.state_dict().items()}
    before = {name: {k: v.clone() for k, v in m.state_dict().items()}
              for name, m in (("adapters", adapters), ("g", model.prompt_generator), ("h", model.surrogate))}
    loss = train_step(model, adapters, volume, 1, new_optimizer(model, adapters, TrainConfig()), "cpu")
    assert np.isfinite(loss)
    after = tiny_sam.state_dict()
    assert all(torch.equal(sam_before[k], after[k]) for k in sam_before)
    assert all(not p.requires_grad for p in tiny_sam.parameters())
    for name, module in (("adapters", adapters), ("g", model.prompt_generator), ("h", model.surrogate)):
        changed = [k for k, v in module.state_dict().items() if not torch.equal(v, before[name][k])]
        assert changed, f"{name} did not change"
    assert any(float(block.up.weight.detach().abs().max()) > 0 for block in adapters.blocks)  # zero-init left zero


def test_train_depth_round_trip_and_stack_segmentation(tiny_sam, stack, tmp_path):
    image, mask = stack
    samples = samples_from_arrays([image], [mask], names=["tubes"])
    config = TrainConfig(depth_adapters=True, depth_window=2, steps=1, val_every=1, generator="hardnet_small",
                         input_size=64)
    events = []
    result = run(train(tiny_sam, samples, config=config, out=tmp_path / "m.safetensors"), on_progress=events.append)
    assert {e.phase for e in events} >= {"train_g", "save"}
    assert result.model.adapters is not None
    loaded = load_checkpoint(result.path)
    assert loaded.metadata["adapters"]["kind"] == "depth_mlp"
    assert loaded.metadata["adapters"]["depth_window"] == 2
    assert loaded.metadata["adapters"]["in_channels"] == 3
    assert loaded.metadata["training"]["depth_adapters"] is True
    with safe_open(str(result.path), framework="pt") as fh:
        keys = list(fh.keys())
    assert any(k.startswith("adapters.blocks.") for k in keys) and "adapters.depth_embed" in keys
    for k, v in result.model.adapters.state_dict().items():
        assert torch.equal(v, loaded.adapters.state_dict()[k]), k
    res = run(Segmenter(tiny_sam, loaded).segment(image, stack=True))
    assert res.autosam_mask.shape == res.h_mask.shape == (3, 32, 32)
    assert [w.z for w in res.windows] == [0, 1, 2]  # windows [0, 1] and [1, 2]: every slice once
    assert any("depth adapters" in m for m in res.messages)
    assert 0.0 <= inter_slice_dice(res.autosam_mask) <= 1.0
    report = run(evaluate(tiny_sam, result.path, samples))  # evaluate scores a depth model through its adapters
    assert report.autosam.names == ["tubes (array 0):z0", "tubes (array 0):z1", "tubes (array 0):z2"]


def test_checkpoint_without_adapters_loads_and_segments_slice_by_slice(tiny_sam, stack, tmp_path):
    base = default_model()
    path = save_checkpoint(tmp_path / "old.safetensors", base.prompt_generator, base.surrogate, sam_variant="tiny")
    loaded = load_checkpoint(path)
    assert loaded.adapters is None and "adapters" not in loaded.metadata
    seg = Segmenter(tiny_sam, loaded)
    assert seg.adapters is None
    res = run(seg.segment(stack[0], stack=True))
    assert res.autosam_mask.shape == (3, 32, 32)
    assert not any("depth adapters" in m for m in res.messages)
    expected = run(Segmenter(tiny_sam, base).segment(stack[0], stack=True))
    np.testing.assert_array_equal(res.autosam_prob, expected.autosam_prob)


def test_multichannel_stack_goes_through_the_modality_adapter(tiny_sam):
    rng = np.random.default_rng(0)
    image = rng.random((2, 24, 24, 4)).astype(np.float32)
    volume = volumes_from_arrays([image], [np.ones((2, 24, 24), np.uint8)])[0]
    assert volume.channels.shape == (2, 24, 24, 4) and volume.channels.dtype == np.uint8
    seg = Segmenter(tiny_sam, _depth_model(build_adapters(tiny_sam, "dconv", 2, in_channels=4)))
    res = run(seg.segment(image, channel_axis=3))
    assert res.autosam_mask.shape == (2, 24, 24)
    with pytest.raises(AdapterMismatchError, match="5 channels .* takes 4"):
        run(seg.segment(rng.random((2, 24, 24, 5)).astype(np.float32), channel_axis=3))


def test_bad_inputs_give_one_clear_line(tiny_sam, stack):
    seg = Segmenter(tiny_sam, _depth_model(build_adapters(tiny_sam, "depth_mlp", 4)))
    with pytest.raises(DepthWindowError, match="3 slices, fewer than the depth window of 4"):
        run(seg.segment(stack[0], stack=True))
    big = DepthAdapters("depth_mlp", 2, 768, 12, sam_variant="vit_b")
    with pytest.raises(AdapterMismatchError, match=r"vit_b \(12 blocks of width 768\).*tiny \(2 blocks of width 64\)"):
        check_adapters(big, tiny_sam)
    with pytest.raises(AdapterMismatchError, match="vit_b"):
        Segmenter(tiny_sam, _depth_model(big))


def test_cli_train_depth_adapters_refuses_a_short_stack_and_a_foreign_model(tiny_sam, tmp_path, capfd):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    image, mask = make_depth_stack(depth=6, shape=(32, 32), n_tubes=1, n_beads=1, radius_range=(5, 6), seed=1)
    tifffile.imwrite(images / "short.tif", image)
    tifffile.imwrite(masks / "short.tif", mask)
    code, text = cli(capfd, "train", "--images", images, "--masks", masks, "--out", tmp_path / "store",
                     "--sam", "tiny", "--depth-adapters", "--depth-window", "7", "--steps", "1")
    assert_error(code, text, "short.tif", "6 slices", "depth window of 7")
    assert not list((tmp_path / "store").glob("*.safetensors"))
    base = default_model()
    foreign = save_checkpoint(tmp_path / "foreign.safetensors", base.prompt_generator, base.surrogate,
                              sam_variant="tiny", adapters=DepthAdapters("dconv", 2, 96, 3, sam_variant="tiny"))
    code, text = cli(capfd, "segment", images / "short.tif", "--out", tmp_path / "out", "--model", foreign,
                     "--sam", "tiny")
    assert_error(code, text, "3 blocks of width 96", "2 blocks of width 64")
    four = save_checkpoint(tmp_path / "four.safetensors", base.prompt_generator, base.surrogate, sam_variant="tiny",
                           adapters=DepthAdapters("depth_mlp", 2, 64, 2, in_channels=4, sam_variant="tiny"))
    code, text = cli(capfd, "segment", images / "short.tif", "--out", tmp_path / "out", "--model", four,
                     "--sam", "tiny")
    assert_error(code, text, "1 channel", "modality adapter takes 4")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_cli_train_depth_adapters_writes_a_model_with_adapters(tiny_sam, tmp_path, capfd):
    import json

    from napari_autosam.models.checkpoint import read_metadata

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    image, mask = make_depth_stack(depth=5, shape=(32, 32), n_tubes=1, n_beads=1, radius_range=(5, 6), seed=2)
    tifffile.imwrite(images / "tubes.tif", image)
    tifffile.imwrite(masks / "tubes.tif", mask)
    code, text = cli(capfd, "train", "--images", images, "--masks", masks, "--out", tmp_path / "m.safetensors",
                     "--sam", "tiny", "--depth-adapters", "--depth-window", "5", "--depth-kind", "dconv",
                     "--steps", "1", "--generator", "hardnet_small", "--input-size", "64", "--json")
    assert code == 0, text
    start = text.index("{\n  \"path\"")
    summary = json.loads(text[start : text.index("\n}", start) + 2])
    meta = read_metadata(summary["path"])
    assert meta["adapters"]["kind"] == "dconv" and meta["adapters"]["depth_window"] == 5
    assert summary["metrics"]["val_kind"] == "training image"
