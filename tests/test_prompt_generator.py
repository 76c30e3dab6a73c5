"""The prompt generator g, its HarDNet backbones, and the surrogate decoder h."""

from __future__ import annotations

import json

import pytest
import torch

from napari_autosam.models.hardnet import (
    HARDNET85,
    HARDNET_SMALL,
    HarDNet,
    HarDNetSpec,
    hard_links,
    load_pretrained_backbone,
)
from napari_autosam.models.prompt_generator import (
    PROMPT_GENERATORS,
    PromptGenerator,
    build_prompt_generator,
)
from napari_autosam.models.surrogate import LayerNorm2d, SurrogateDecoder

# Three blocks at /4, /8, /16 and a fourth at /32 that a truncated encoder drops.
TINY = HarDNetSpec(
    stem_channels=(4, 8),
    growth=(4, 4, 6, 8),
    n_layers=(2, 4, 4, 2),
    transition_channels=(8, 12, 16, 24),
    pool_after=(0, 1, 2),
    last_dropout=0.1,
)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def small_generator() -> PromptGenerator:
    return build_prompt_generator("hardnet_small", input_size=64)


# --- HarDNet ---------------------------------------------------------------


def test_hard_links_follow_powers_of_two():
    assert hard_links(1) == [0]
    assert hard_links(2) == [1, 0]
    assert hard_links(6) == [5, 4]
    assert hard_links(8) == [7, 6, 4, 0]
    assert hard_links(12) == [11, 10, 8]


def test_block0_widths_by_hand():
    with torch.device("meta"):
        block = HarDNet(HARDNET85).base[3]
    # growth 24, multiplier 1.7: links 1 -> 24; 2 -> 40.8 -> 40; 3 -> 69.36 -> 70; 4 -> 117.91 -> 118.
    assert block.layer_widths == (24, 40, 24, 70, 24, 40, 24, 118)
    # Layer 8 reads layers 7, 6, 4 and the 96-channel block input.
    assert block.layers[7].conv.in_channels == 24 + 40 + 70 + 96
    # Output: odd layers 1, 3, 5, 7 and the last.
    assert block.out_channels == 4 * 24 + 118


def test_hardnet85_published_key_layout():
    with torch.device("meta"):
        full = HarDNet(HARDNET85, full=True)
    shapes = {k: tuple(v.shape) for k, v in full.state_dict().items()}
    assert shapes["base.0.conv.weight"] == (48, 3, 3, 3)
    assert shapes["base.1.norm.running_mean"] == (96,)
    assert shapes["base.3.layers.7.conv.weight"] == (118, 230, 3, 3)
    assert shapes["base.14.conv.weight"] == (720, 784, 1, 1)
    assert shapes["base.18.conv.weight"] == (1280, 1252, 1, 1)
    assert isinstance(full.base[17], torch.nn.Dropout)
    assert len(full.base) == 19


def test_hardnet_taps():
    model = HarDNet(HARDNET85).eval()
    assert len(model.base) == 15
    assert model.tap_channels == {2: 96, 4: 192, 8: 320, 16: 720}
    with torch.no_grad():
        features = model(torch.randn(1, 3, 64, 64))
    assert {s: tuple(f.shape) for s, f in features.items()} == {
        2: (1, 96, 32, 32),
        4: (1, 192, 16, 16),
        8: (1, 320, 8, 8),
        16: (1, 720, 4, 4),
    }
    full = HarDNet(HARDNET85, full=True).eval()
    assert full.tap_channels[32] == 1280
    with torch.no_grad():
        assert tuple(full(torch.randn(1, 3, 64, 64))[32].shape) == (1, 1280, 2, 2)


def test_parameter_counts():
    with torch.device("meta"):
        full = PromptGenerator(HarDNet(HARDNET85, full=True), (192, 320, 720))
        truncated = build_prompt_generator("hardnet85")
    assert abs(n_params(full) - 41.6e6) / 41.6e6 < 0.02  # AutoSAM paper
    assert 23.5e6 < n_params(truncated) < 24.5e6  # measured 24,052,124
    assert 0.3e6 < n_params(build_prompt_generator("hardnet_small").backbone) < 2e6


# --- g ---------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PROMPT_GENERATORS))
@pytest.mark.parametrize("size", [64, 128])
def test_prompt_generator_output(name, size):
    g = build_prompt_generator(name, input_size=size)
    x = torch.randn(2, 3, size, size)
    y = g(x)  # training mode: BatchNorm uses batch statistics
    assert y.shape == (2, 256, 64, 64)
    g.eval()
    with torch.no_grad():
        y = g(x)
    assert y.shape == (2, 256, 64, 64)
    assert y.dtype == torch.float32
    assert float(y.abs().max()) <= 1.0


def test_prompt_generator_backpropagates(small_generator):
    small_generator(torch.randn(2, 3, 64, 64)).mean().backward()
    assert all(p.grad is not None for p in small_generator.parameters())


def test_prompt_generator_rejects_bad_input(small_generator):
    with pytest.raises(ValueError, match="Bx3xSxS"):
        small_generator(torch.randn(1, 3, 64, 96))
    with pytest.raises(ValueError, match="Bx3xSxS"):
        small_generator(torch.randn(1, 1, 64, 64))


def test_config_rebuilds(small_generator):
    config = json.loads(json.dumps(small_generator.config))
    assert config == {"name": "hardnet_small", "input_size": 64}
    rebuilt = build_prompt_generator(**config)
    assert rebuilt.backbone_name == "hardnet_small" and rebuilt.input_size == 64
    rebuilt.load_state_dict(small_generator.state_dict())


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError, match="hardnet85.*hardnet_small"):
        build_prompt_generator("resnet9000")


def test_input_size_must_be_multiple_of_16():
    with pytest.raises(ValueError, match="multiple of 16"):
        build_prompt_generator("hardnet_small", input_size=100)


# --- ImageNet weights ------------------------------------------------------


def _saved_full_weights(tmp_path, **changes):
    """Save a full TINY HarDNet's weights plus a classifier, as published files hold them."""
    state = HarDNet(TINY, full=True).state_dict()
    state["base.15.3.weight"] = torch.randn(1000, 24)
    state["base.15.3.bias"] = torch.randn(1000)
    state.update(changes)
    path = tmp_path / "imagenet.pth"
    torch.save(state, path)
    return path, state


def test_pretrained_loads_and_ignores_unused_keys(tmp_path):
    path, state = _saved_full_weights(tmp_path)
    model = HarDNet(TINY)
    assert len(model.base) == 11  # no pool, last block, dropout or transition (base.11-14)
    load_pretrained_backbone(model, path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_pretrained_tolerates_prefix_and_old_batchnorm(tmp_path):
    state = {
        f"module.{k}": v for k, v in HarDNet(TINY).state_dict().items() if not k.endswith("num_batches_tracked")
    }
    torch.save(state, tmp_path / "old.pth")
    load_pretrained_backbone(HarDNet(TINY), tmp_path / "old.pth")


def test_pretrained_shape_mismatch_names_key(tmp_path):
    path, _ = _saved_full_weights(tmp_path, **{"base.3.layers.0.conv.weight": torch.randn(5, 8, 3, 3)})
    model = HarDNet(TINY)
    before = model.base[0].conv.weight.clone()
    with pytest.raises(ValueError, match=r"shape mismatches: base\.3\.layers\.0\.conv\.weight"):
        load_pretrained_backbone(model, path)
    assert torch.equal(model.base[0].conv.weight, before)  # nothing loaded


def test_pretrained_missing_and_unexpected_keys(tmp_path):
    state = HarDNet(TINY).state_dict()
    del state["base.4.conv.weight"]
    state["head.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"missing keys: base\.4\.conv\.weight.*unexpected keys: head\.weight"):
        load_pretrained_backbone(HarDNet(TINY), tmp_path / "bad.pth")


def test_builder_loads_pretrained_backbone(tmp_path):
    backbone = HarDNet(HARDNET_SMALL)
    torch.save(backbone.state_dict(), tmp_path / "small.pth")
    g = build_prompt_generator("hardnet_small", input_size=64, pretrained_backbone=tmp_path / "small.pth")
    assert torch.equal(g.backbone.base[3].layers[2].conv.weight, backbone.base[3].layers[2].conv.weight)


# --- h ---------------------------------------------------------------------


def test_surrogate_shape_and_size():
    h = SurrogateDecoder()
    assert h(torch.rand(2, 256, 64, 64) * 2 - 1).shape == (2, 1, 256, 256)
    by_hand = (256 * 64 * 9 + 64) + 2 * 64 + (64 * 16 * 4 + 16) + 2 * 16 + (16 + 1)
    assert n_params(h) == by_hand == 151_809


def test_surrogate_config_rebuilds():
    h = SurrogateDecoder()
    config = json.loads(json.dumps(h.config))
    SurrogateDecoder(**config).load_state_dict(h.state_dict())
    with pytest.raises(ValueError, match="Bx256xHxW"):
        h(torch.zeros(1, 3, 64, 64))


def test_layernorm2d_normalises_channels():
    x = torch.randn(2, 16, 5, 7) * 3 + 2
    y = LayerNorm2d(16)(x)
    assert torch.allclose(y.mean(dim=1), torch.zeros(2, 5, 7), atol=1e-5)
    assert torch.allclose(y.var(dim=1, unbiased=False), torch.ones(2, 5, 7), atol=1e-3)
