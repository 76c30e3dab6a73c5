"""The logit gain of g's loss: a frozen decoder with small logits still gets a confident, boundary-driven loss."""

from __future__ import annotations

import pytest
import torch

from napari_autosam.losses import GAIN_MAX, bce_dice_loss, logit_gain
from napari_autosam.training import TrainConfig
from napari_autosam.training.config import budget_settings


def test_small_logits_get_a_gain_large_ones_none_and_masks_do_not_change():
    small = torch.tensor([[-0.5, 0.5], [0.25, -0.25]])[None, None]
    gain = logit_gain(small)
    rms = float(small.pow(2).mean().sqrt())
    assert float(gain) == pytest.approx(4.0 / rms)
    assert not gain.requires_grad
    assert float(logit_gain(small * 20)) == 1.0  # already confident: the paper's loss
    assert float(logit_gain(small * 1e-4)) == GAIN_MAX
    assert torch.equal((gain * small) > 0, small > 0)  # the predicted mask is the same
    target = (small > 0).float()
    assert float(bce_dice_loss(gain * small, target)) < float(bce_dice_loss(small, target))


def test_the_gain_is_automatic_by_default_fixed_on_request_and_positive():
    assert TrainConfig().resolved("cpu").logit_gain is None
    assert TrainConfig(logit_gain=1.0).resolved("cpu").logit_gain == 1.0
    with pytest.raises(ValueError, match="logit_gain"):
        TrainConfig(logit_gain=0).resolved("cpu")


def test_the_cli_takes_the_logit_gain():
    import argparse

    from napari_autosam.cli import train_command as cli_train

    parser = argparse.ArgumentParser()
    cli_train.register(parser.add_subparsers())
    base = ["train", "--images", "i", "--masks", "m", "--out", "o"]
    assert cli_train._config(parser.parse_args(base)).logit_gain is None
    assert cli_train._config(parser.parse_args([*base, "--logit-gain", "1"])).logit_gain == 1.0


def test_budget_settings_give_way_to_an_epoch_budget():
    assert budget_settings(300, 200, 170.0, {}) == {"steps": 300, "h_steps": 200, "time_limit": 170.0}
    assert budget_settings(300, 200, None, {"epochs": 3}) == {"time_limit": None, "epochs": 3}
    assert budget_settings(300, 200, None, {"h_epochs": 1, "time_limit": 5}) == {"steps": 300, "h_epochs": 1,
                                                                                 "time_limit": 5}


@pytest.mark.heavy
def test_a_free_prompt_fits_a_mask_through_the_tiny_decoder_better_with_the_gain(tiny_sam):
    """Why the gain exists: the random decoder's logits stay within about ±1, so without it BCE stays unsatisfied."""
    from napari_autosam.data.synthetic import make_nuclei_image
    from napari_autosam.models.autosam import AutoSAM
    from napari_autosam.sam.embedding import LOGIT_SIZE, image_embedding, mask_to_padded_frame
    from napari_autosam.training import samples_from_arrays
    from napari_autosam.training.scoring import score

    sample = samples_from_arrays(*zip(make_nuclei_image((128, 128), seed=3)))[0]  # RGB uint8, as training sees it
    mask = sample.mask
    embedding = image_embedding(tiny_sam, sample.image)
    target = mask_to_padded_frame(mask, LOGIT_SIZE)[None].float()
    model = AutoSAM(tiny_sam, torch.nn.Identity())
    fits = {}
    for use_gain in (False, True):
        q = torch.zeros(1, 256, 64, 64, requires_grad=True)
        optimizer = torch.optim.Adam([q], lr=0.05)
        for _ in range(80):
            logits = model.decode(embedding, torch.tanh(q))
            loss = bce_dice_loss((logit_gain(logits) if use_gain else 1.0) * logits, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        fits[use_gain] = score(logits.detach()[0], mask)[0]
    assert fits[True] >= 0.97 and fits[True] > fits[False]
