import math

import numpy as np
import pytest
import torch

from napari_autosam.losses import bce_dice_loss, dice_iou, soft_dice_loss, threshold_metrics


def test_loss_matches_a_hand_computed_value():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]]])
    target = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])
    p = [0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1)), 1 / (1 + math.exp(-3))]
    t = [0, 1, 1, 1]
    bce = -sum(ti * math.log(pi) + (1 - ti) * math.log(1 - pi) for pi, ti in zip(p, t)) / 4
    tp = sum(pi * ti for pi, ti in zip(p, t))
    fp = sum(pi * (1 - ti) for pi, ti in zip(p, t))
    fn = sum((1 - pi) * ti for pi, ti in zip(p, t))
    dice = 1 - (2 * tp + 1) / (2 * tp + fn + fp + 1)
    assert soft_dice_loss(logits, target).item() == pytest.approx(dice, rel=1e-6)
    assert bce_dice_loss(logits, target).item() == pytest.approx(bce + dice, rel=1e-6)


def test_dice_loss_is_averaged_per_image():
    logits = torch.stack([torch.full((1, 4, 4), 20.0), torch.full((1, 4, 4), -20.0)])
    target = torch.ones(2, 1, 4, 4)
    # image 1 is perfect (loss ~0); image 2 predicts nothing: 1 - 1/(16+1)
    expected = (0.0 + (1 - 1 / 17)) / 2
    assert soft_dice_loss(logits, target).item() == pytest.approx(expected, abs=1e-6)


def test_metrics_on_known_masks():
    truth = np.zeros((10, 10), bool)
    truth[:, :5] = True  # 50 px
    pred = np.zeros((10, 10), bool)
    pred[:, 2:7] = True  # 50 px, 30 overlap
    dice, iou = dice_iou(pred, truth)
    assert dice == pytest.approx(2 * 30 / 100)
    assert iou == pytest.approx(30 / 70)
    assert dice_iou(np.zeros((3, 3)), np.zeros((3, 3))) == (1.0, 1.0)
    assert dice_iou(np.ones((3, 3)), np.zeros((3, 3))) == (0.0, 0.0)
    with pytest.raises(ValueError, match="shape"):
        dice_iou(np.zeros((2, 2)), np.zeros((3, 3)))


def test_threshold_metrics_thresholds_probabilities_at_one_half():
    logits = torch.tensor([[[0.1, -0.1]]])  # sigmoid 0.525 and 0.475
    target = torch.tensor([[[1.0, 0.0]]])
    assert threshold_metrics(logits, target) == [(1.0, 1.0)]
