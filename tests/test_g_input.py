"""g's input transform (rgb / rgb_norm / hed): what it computes, how models record it, old models unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_autosam.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from napari_autosam.models.prompt_generator import build_prompt_generator
from napari_autosam.models.stain import InputTransform
from napari_autosam.models.surrogate import SurrogateDecoder
from napari_autosam.sam.embedding import PIXEL_MEAN, PIXEL_STD
from napari_autosam.training import TrainConfig
from napari_autosam.training.start import initial_model


def _normalised(rgb: np.ndarray) -> torch.Tensor:
    """``H×W×3`` 0-255 -> ``1×3×H×W`` SAM-normalised, as g receives it."""
    x = torch.tensor(rgb, dtype=torch.float32).permute(2, 0, 1)[None]
    return (x - torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)) / torch.tensor(PIXEL_STD).view(1, 3, 1, 1)


def _he_picture(seed: int = 0) -> np.ndarray:
    """Pink (eosin) background with purple (haematoxylin) blobs, 32² RGB."""
    rng = np.random.default_rng(seed)
    rgb = np.empty((32, 32, 3))
    rgb[:] = (235, 160, 200)
    rgb[8:16, 8:16] = (70, 40, 140)
    rgb[20:28, 18:26] = (80, 50, 150)
    return np.clip(rgb + rng.normal(0, 3, rgb.shape), 0, 255)


def test_rgb_is_unchanged_and_hed_puts_nuclei_high_in_its_first_channel():
    x = _normalised(_he_picture())
    assert torch.equal(InputTransform("rgb")(x), x)
    hed = InputTransform("hed")(x)[0]
    nuclei = torch.zeros(32, 32, dtype=torch.bool)
    nuclei[8:16, 8:16] = nuclei[20:28, 18:26] = True
    assert hed[0][nuclei].mean() > 2.0 and hed[0][~nuclei].mean() < 0  # haematoxylin: high on nuclei
    for channel in hed:  # standardised per image
        assert abs(float(channel.mean())) < 1e-4 and abs(float(channel.std(unbiased=False)) - 1) < 1e-2


@pytest.mark.parametrize("name", ["rgb_norm", "hed"])
def test_a_paler_or_darker_stain_looks_the_same_to_g(name):
    picture = _he_picture()
    transform = InputTransform(name)
    reference = transform(_normalised(picture))
    if name == "rgb_norm":  # any per-channel gain and offset
        changed = picture * np.array([0.8, 1.1, 0.9]) + np.array([10, -5, 0])
    else:  # a weaker stain: optical densities scaled, I = 256 (I0 / 256)^k - 1
        changed = 256 * ((picture + 1) / 256) ** 0.7 - 1
    assert torch.allclose(transform(_normalised(changed)), reference, atol=2e-3)


def test_padding_stays_zero_and_does_not_count():
    picture = _normalised(_he_picture())
    padded = torch.zeros(1, 3, 48, 48)
    padded[..., :32, :32] = picture
    out = InputTransform("hed")(padded)
    assert torch.count_nonzero(out[..., 32:, :]) == 0 and torch.count_nonzero(out[..., :, 32:]) == 0
    assert torch.allclose(out[..., :32, :32], InputTransform("hed")(picture), atol=1e-4)


def test_a_model_records_its_input_and_old_metadata_loads_as_rgb(tmp_path):
    torch.manual_seed(0)
    g = build_prompt_generator("hardnet_small", input_size=64, input_transform="hed").eval()
    path = save_checkpoint(tmp_path / "hed.safetensors", g, SurrogateDecoder())
    loaded = load_checkpoint(path)
    assert loaded.prompt_generator.input_transform.name == "hed"
    assert loaded.prompt_generator.config == {"name": "hardnet_small", "input_size": 64, "input_transform": "hed"}
    x = _normalised(np.resize(_he_picture(), (64, 64, 3)))
    with torch.no_grad():
        assert torch.allclose(loaded.prompt_generator.eval()(x), g(x), atol=1e-5)
    # a model saved before the option existed names no input transform: it reads RGB, as it was trained
    plain = build_prompt_generator("hardnet_small", input_size=64)
    assert "input_transform" not in plain.config and set(plain.state_dict()) == set(g.state_dict())
    old = load_checkpoint(save_checkpoint(tmp_path / "old.safetensors", plain, SurrogateDecoder()))
    assert old.prompt_generator.input_transform.name == "rgb"


def test_an_unknown_input_transform_is_refused_in_settings_and_in_files(tmp_path):
    with pytest.raises(ValueError, match="unknown g input"):
        TrainConfig(g_input="lab").resolved("cpu")
    g = build_prompt_generator("hardnet_small", input_size=64, input_transform="hed")
    path = save_checkpoint(tmp_path / "m.safetensors", g, SurrogateDecoder())
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    inner = json.loads(meta["napari_autosam"])
    inner["prompt_generator"]["input_transform"] = "lab"
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata={**meta, "napari_autosam": json.dumps(inner)})
    with pytest.raises(CheckpointError, match="input_transform"):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_new_models_follow_the_setting_and_a_warm_start_keeps_its_own():
    config = TrainConfig(generator="hardnet_small", input_size=64, g_input="hed")
    model = initial_model(config)
    assert model.prompt_generator.input_transform.name == "hed"
    warm = initial_model(TrainConfig(), init=model)
    assert warm.prompt_generator.input_transform.name == "hed"
    with pytest.raises(ValueError, match="g-input"):
        initial_model(TrainConfig(g_input="rgb"), init=model)


def test_the_command_line_passes_g_input_and_leaves_it_unset_by_default():
    import argparse

    from napari_autosam.cli import train_command as cli_train

    parser = argparse.ArgumentParser()
    cli_train.register(parser.add_subparsers())
    base = ["train", "--images", "i", "--masks", "m", "--out", "o"]
    assert cli_train._config(parser.parse_args([*base, "--g-input", "hed"])).g_input == "hed"
    assert cli_train._config(parser.parse_args(base)).g_input is None  # the library default decides
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--g-input", "lab"])
