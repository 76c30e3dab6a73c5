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


def test_the_recorded_gain_is_that_of_the_kept_state():
    from napari_autosam.losses import summary_gain

    gains = [2.0] * 5 + [8.0] * 5  # the later steps trained a state that was thrown away
    assert summary_gain(gains, 1.0, upto=5) == 2.0
    assert summary_gain(gains, 1.5, upto=0) == 1.5  # the starting state was kept: its own gain
    assert summary_gain(gains, 1.0) == 8.0


def _realistic(tiny_sam, rms: float = 10.0):
    """The tiny SAM with its mask decoder's output scaled so that its logits have SAM's own scale (RMS ~10)."""
    import copy

    from napari_autosam.models.autosam import AutoSAM
    from napari_autosam.sam.embedding import image_embedding

    sam = copy.deepcopy(tiny_sam)
    embedding = image_embedding(sam, torch.full((64, 64, 3), 128, dtype=torch.uint8).numpy())
    prompt = torch.tanh(torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        before = AutoSAM(sam, torch.nn.Identity()).decode(embedding, prompt).pow(2).mean().sqrt()
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(rms / before)
            mlp.layers[-1].bias.mul_(rms / before)
        after = AutoSAM(sam, torch.nn.Identity()).decode(embedding, prompt)
    assert float(after.pow(2).mean().sqrt()) == pytest.approx(rms, rel=0.05)
    return sam


def test_a_sam_whose_logits_have_a_realistic_scale_keeps_the_paper_loss(tiny_sam, tmp_path):
    from napari_autosam.data.synthetic import make_nuclei_image
    from napari_autosam.progress import run
    from napari_autosam.training import samples_from_arrays, train

    sam = _realistic(tiny_sam)
    images, masks = zip(*(make_nuclei_image((64, 64), seed=s)[:2] for s in range(3)))
    config = TrainConfig(generator="hardnet_small", input_size=64, steps=3, h_steps=0, min_steps=0, batch_size=2,
                         variants=("identity",), val_every=1, device="cpu")
    result = run(train(sam, samples_from_arrays(images, masks), config=config, out=tmp_path / "m.safetensors"))
    assert result.model.metadata["probability_gain"] == 1.0  # k = 1: the paper's loss, probabilities unchanged
    from napari_autosam.models.autosam import AutoSAM
    from napari_autosam.sam.embedding import image_embedding, prepare_image

    trained = AutoSAM(sam, result.model.prompt_generator).eval()
    image = samples_from_arrays(images, masks)[0].image
    with torch.no_grad():  # the trained g still drives this decoder at SAM's scale: no gain at any step
        logits = trained(prepare_image(image, 64)[0], image_embedding(sam, image)).sam_logits
    assert float(logit_gain(logits)) == 1.0
