"""The fast cached training step: the same numbers as the plain one, to float rounding."""

from copy import deepcopy

import pytest
import torch

from napari_autosam.losses import bce_dice_loss
from napari_autosam.models.autosam import AutoSAM
from napari_autosam.models.prompt_generator import build_prompt_generator
from napari_autosam.sam.fast_decoder import FAST_DECODER_ENV, decode_dense, fused_decoder_attention
from napari_autosam.training.fast_step import g_prompt_and_logits


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max()) if b.abs().max() > 0 else float((a - b).abs().max())


@pytest.fixture
def model(tiny_sam):
    torch.manual_seed(0)
    return AutoSAM(tiny_sam, build_prompt_generator("hardnet_small", input_size=128))


def test_dense_decoding_equals_the_stock_decoder_with_its_gradient(model):
    torch.manual_seed(1)
    embedding = torch.randn(2, 256, 64, 64)
    prompt = torch.randn(2, 256, 64, 64).tanh().requires_grad_()
    stock = model.decode(embedding, prompt)
    (stock_grad,) = torch.autograd.grad(stock.square().sum(), prompt)
    fast = decode_dense(model.sam, embedding, prompt)
    (fast_grad,) = torch.autograd.grad(fast.square().sum(), prompt)
    assert fast.shape == stock.shape == (2, 1, 256, 256)
    assert _relative(fast.detach(), stock.detach()) < 1e-5
    assert _relative(fast_grad, stock_grad) < 1e-4
    assert not any(p.grad is not None for p in model.sam.mask_decoder.parameters())


def test_the_fused_decoder_attention_is_given_back_and_equals_the_stock_one(model):
    decoder = model.sam.mask_decoder
    torch.manual_seed(2)
    embedding, pe = torch.randn(1, 256, 64, 64), model.sam.prompt_encoder.get_dense_pe()
    points = torch.randn(3, 2, 256)  # three prompt sets of two point embeddings each
    dense = torch.randn(3, 256, 64, 64)
    with torch.no_grad():
        stock = decoder(embedding, pe, points, dense, multimask_output=True)[0]
        with fused_decoder_attention(model.sam):
            assert all("forward" in m.__dict__ for m in decoder.transformer.layers[0].modules()
                       if type(m).__name__ == "Attention")
            fused = decoder(embedding, pe, points, dense, multimask_output=True)[0]
    assert not any("forward" in m.__dict__ for m in decoder.modules())
    assert _relative(fused, stock) < 1e-5


def test_the_environment_keeps_the_stock_decoder(model, monkeypatch):
    monkeypatch.setenv(FAST_DECODER_ENV, "0")
    embedding, prompt = torch.randn(1, 256, 64, 64), torch.randn(1, 256, 64, 64).tanh()
    with torch.no_grad():
        assert torch.equal(decode_dense(model.sam, embedding, prompt), model.decode(embedding, prompt))


def _double(model: AutoSAM) -> AutoSAM:
    """A float64 copy (segment-anything builds its positional-encoding grid in float32: given in float64)."""
    pe = model.sam.prompt_encoder.get_dense_pe().double()
    copy = deepcopy(model).double()
    copy.sam.prompt_encoder.get_dense_pe = lambda: pe
    return copy


def test_fast_step_gives_the_plain_loss_and_gradients(model):
    torch.manual_seed(3)
    g_input, embedding = torch.randn(2, 3, 128, 128), torch.randn(2, 256, 64, 64)
    target = (torch.rand(2, 1, 256, 256) > 0.5).float()

    def loss_and_grads(m: AutoSAM, fast: bool, dtype=torch.float32):
        g = m.prompt_generator.train()
        g.zero_grad(set_to_none=True)
        x, emb = g_input.to(dtype), embedding.to(dtype)
        logits = g_prompt_and_logits(m, x, emb)[1] if fast else m.decode(emb, g(x))
        loss = bce_dice_loss(logits, target.to(dtype))
        loss.backward()
        return float(loss.detach()), torch.cat([p.grad.double().flatten() for p in g.parameters()])

    exact = _double(model)
    ref_loss, ref = loss_and_grads(exact, False, torch.float64)
    fast64_loss, fast64 = loss_and_grads(exact, True, torch.float64)
    assert fast64_loss == pytest.approx(ref_loss, rel=1e-12)
    assert float((fast64 - ref).norm() / ref.norm()) < 1e-10  # the same computation, only reordered
    # in float32 both steps round (BatchNorm over 2 images and Dice amplify it): the fast one no more
    plain_loss, plain = loss_and_grads(model, False)
    fast_loss, fast = loss_and_grads(model, True)
    assert fast_loss == pytest.approx(plain_loss, rel=1e-5)
    plain_error = float((plain - ref).norm() / ref.norm())
    assert float((fast - ref).norm() / ref.norm()) < 2 * plain_error + 1e-6


@pytest.mark.parametrize("multimask", [False, True])
def test_point_and_box_decoding_equals_the_stock_decoder(tiny_sam, monkeypatch, multimask):
    """prompts.decode (instances, clicks) through decode_prompts: the stock logits and IoU scores."""
    import numpy as np

    from napari_autosam.inference.prompts import decode

    torch.manual_seed(3)
    embedding = torch.randn(1, 256, 64, 64)
    rng = np.random.default_rng(0)
    points = (rng.uniform(0, 1024, (5, 2, 2)), np.array([[1, 0]] * 5))
    boxes = np.sort(rng.uniform(0, 1024, (5, 2, 2)), axis=1).reshape(5, 4)
    dense = torch.randn(1, 256, 64, 64).tanh()
    masks = torch.randn(5, 1, 256, 256) * 5  # one mask prompt per set: a dense prompt of its own each
    for kwargs in ({"points": points}, {"boxes": boxes}, {"points": points, "boxes": boxes, "dense": dense},
                   {"boxes": boxes, "masks": masks}):
        fast = decode(tiny_sam, embedding, multimask=multimask, **kwargs)
        monkeypatch.setenv(FAST_DECODER_ENV, "0")
        stock = decode(tiny_sam, embedding, multimask=multimask, **kwargs)
        monkeypatch.delenv(FAST_DECODER_ENV)
        k = 3 if multimask else 1
        assert fast[0].shape == stock[0].shape == (5, k, 256, 256) and fast[1].shape == stock[1].shape == (5, k)
        assert _relative(fast[0], stock[0]) < 1e-5 and _relative(fast[1], stock[1]) < 1e-5


def test_autosam_inference_decodes_like_the_stock_decoder(model, monkeypatch):
    torch.manual_seed(4)
    g_input, embedding = torch.randn(2, 3, 128, 128), torch.randn(2, 256, 64, 64)
    model.eval()
    with torch.no_grad():
        fast = model(g_input, embedding)
        monkeypatch.setenv(FAST_DECODER_ENV, "0")
        stock = model(g_input, embedding)
    assert fast.sam_logits.shape == stock.sam_logits.shape == (2, 1, 256, 256) and fast.iou.shape == (2, 1)
    assert _relative(fast.sam_logits, stock.sam_logits) < 1e-5 and _relative(fast.iou, stock.iou) < 1e-5
