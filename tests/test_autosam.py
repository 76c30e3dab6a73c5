import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from napari_autosam.losses import bce_dice_loss
from napari_autosam.models.autosam import AutoSAM
from napari_autosam.models.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from napari_autosam.models.prompt_generator import build_prompt_generator
from napari_autosam.models.store import ModelStore, resolve_model_path
from napari_autosam.models.surrogate import SurrogateDecoder
from napari_autosam.sam.embedding import image_embedding, mask_to_padded_frame, prepare_image

SIZE = 64  # g's input side in these tests: small keeps them fast


@pytest.fixture
def model(tiny_sam):
    torch.manual_seed(0)
    return AutoSAM(tiny_sam, build_prompt_generator("hardnet_small", input_size=SIZE), SurrogateDecoder())


@pytest.fixture
def batch(tiny_sam):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(2)]
    g_input = torch.cat([prepare_image(im, SIZE)[0] for im in images])
    embedding = torch.cat([image_embedding(tiny_sam, im) for im in images])
    masks = torch.stack([mask_to_padded_frame(im[..., 0] > 128) for im in images])
    return g_input, embedding, masks


def test_output_shapes(model, batch):
    g_input, embedding, _ = batch
    out = model(g_input, embedding)
    assert out.prompt.shape == (2, 256, 64, 64)
    assert out.sam_logits.shape == (2, 1, 256, 256)
    assert out.h_logits.shape == (2, 1, 256, 256)
    assert out.prompt.abs().max() <= 1.0  # tanh head


def test_h_layer_norm_is_the_per_pixel_normalisation_over_channels():
    """h's LayerNorm2d (torch's fused kernel over the channel axis) equals normalising each pixel by hand."""
    from napari_autosam.models.surrogate import LayerNorm2d

    torch.manual_seed(0)
    norm = LayerNorm2d(16).double()
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(2, 16, 9, 7, dtype=torch.float64, requires_grad=True)
    mean = x.mean(dim=1, keepdim=True)
    var = (x - mean).pow(2).mean(dim=1, keepdim=True)
    by_hand = (x - mean) / torch.sqrt(var + norm.eps) * norm.weight[:, None, None] + norm.bias[:, None, None]
    ours = norm(x)
    assert torch.allclose(ours, by_hand, atol=1e-12)
    grad_ours, = torch.autograd.grad((ours ** 2).sum(), x)
    grad_hand, = torch.autograd.grad((by_hand ** 2).sum(), x)
    assert torch.allclose(grad_ours, grad_hand, atol=1e-10)


def test_an_optimiser_step_changes_g_only(model, batch):
    g_input, embedding, masks = batch
    model.train()
    assert not model.sam.training  # SAM stays in eval mode whatever the wrapper does
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimiser = torch.optim.Adam(model.prompt_generator.parameters(), lr=1e-2)
    loss = bce_dice_loss(model(g_input, embedding, with_surrogate=False).sam_logits, masks)
    loss.backward()
    optimiser.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("prompt_generator.") and "weight" in k for k in changed)
    assert not any(k.startswith("sam.") for k in changed)
    assert all(p.grad is None for p in model.sam.parameters())


def test_checkpoint_round_trip(model, batch, tmp_path):
    g_input, embedding, _ = batch
    model.eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model.prompt_generator, model.surrogate,
                           sam_variant="tiny", trained_on=["a.tif"])
    meta = read_metadata(path)
    assert meta["prompt_generator"] == {"name": "hardnet_small", "input_size": SIZE}
    assert meta["sam_variant"] == "tiny" and meta["trained_on"] == ["a.tif"]
    loaded = load_checkpoint(path)
    again = AutoSAM(model.sam, loaded.prompt_generator, loaded.surrogate).eval()
    with torch.no_grad():
        a, b = model(g_input, embedding), again(g_input, embedding)
    assert torch.equal(a.sam_logits, b.sam_logits) and torch.equal(a.h_logits, b.h_logits)
    assert not list(tmp_path.glob("*.part*"))  # the atomic write left no temporary file


def test_a_checkpoint_that_does_not_fit_names_the_difference(model, tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", model.prompt_generator, None)
    meta_text = json.dumps({**read_metadata(path), "prompt_generator": {"name": "hardnet85", "input_size": SIZE}})
    from safetensors.torch import load_file, save_file

    save_file(load_file(str(path)), str(tmp_path / "wrong.safetensors"), metadata={"napari_autosam": meta_text})
    with pytest.raises(CheckpointError, match="do not fit.*missing"):
        load_checkpoint(tmp_path / "wrong.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 32)
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_checkpoint(tmp_path / "junk.safetensors")


def test_model_store_numbers_versions_and_rolls_back(model, tmp_path):
    store = ModelStore(tmp_path / "models")
    assert store.versions() == [] and store.active is None
    for _ in range(2):
        name, path = store.reserve()
        save_checkpoint(path, model.prompt_generator, model.surrogate)
        store.release(name)
    assert store.versions() == ["v0001", "v0002"]
    assert store.active == "v0002"
    store.activate("v0001")
    assert store.active == "v0001"
    assert [row["version"] for row in store.describe()] == ["v0001", "v0002"]
    with pytest.raises(FileNotFoundError, match="v0009"):
        store.activate("v0009")
    # a store folder stands for its active version wherever a model path is asked for
    assert resolve_model_path(store.root) == store.path("v0001")
    assert resolve_model_path(store.path("v0002")) == store.path("v0002")
    with pytest.raises(FileNotFoundError, match="without model versions"):
        resolve_model_path(tmp_path)


_TRAIN_AND_SAVE = """
import sys, numpy as np, torch
from napari_autosam.progress import run
from napari_autosam.sam.registry import load_sam
from napari_autosam.sam.embedding import image_embedding, mask_to_padded_frame, prepare_image
from napari_autosam.models.autosam import AutoSAM
from napari_autosam.models.checkpoint import load_checkpoint, save_checkpoint
from napari_autosam.models.prompt_generator import build_prompt_generator
from napari_autosam.models.surrogate import SurrogateDecoder
from napari_autosam.losses import bce_dice_loss
mode, folder, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
sam = run(load_sam("tiny"))
image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
g_input, embedding = prepare_image(image, size)[0], image_embedding(sam, image)
if mode == "train":
    torch.manual_seed(0)
    model = AutoSAM(sam, build_prompt_generator("hardnet_small", input_size=size), SurrogateDecoder()).train()
    optimiser = torch.optim.Adam(model.prompt_generator.parameters(), lr=1e-3)
    target = mask_to_padded_frame(image[..., 0] > 128)[None]
    for _ in range(2):
        optimiser.zero_grad()
        bce_dice_loss(model(g_input, embedding, with_surrogate=False).sam_logits, target).backward()
        optimiser.step()
    save_checkpoint(folder + "/trained.safetensors", model.prompt_generator, model.surrogate, sam_variant="tiny")
else:
    ck = load_checkpoint(folder + "/trained.safetensors")
    model = AutoSAM(sam, ck.prompt_generator, ck.surrogate)
model.eval()
with torch.no_grad():
    out = model(g_input, embedding)
torch.save({"sam": out.sam_logits, "h": out.h_logits}, f"{folder}/{mode}.pt")
"""


def test_a_model_trained_against_tiny_gives_identical_results_in_a_new_process(tmp_path):
    """Train and save in one process; a fresh process, with a fresh cache that rebuilds
    the tiny SAM from its seed, reloads the model and agrees bit for bit."""
    for mode in ("train", "reload"):
        env = {"NAPARI_AUTOSAM_CACHE": str(tmp_path / f"cache-{mode}"), "NAPARI_AUTOSAM_DEVICE": "cpu",
               "PATH": "/usr/bin:/bin"}
        subprocess.run([sys.executable, "-c", _TRAIN_AND_SAVE, mode, str(tmp_path), str(SIZE)],
                       env=env, check=True, cwd=tmp_path)
        assert (tmp_path / f"cache-{mode}" / "checkpoints").is_dir()  # tiny SAM was rebuilt there
    trained = torch.load(tmp_path / "train.pt", weights_only=True)
    reloaded = torch.load(tmp_path / "reload.pt", weights_only=True)
    assert trained["sam"].shape == (1, 1, 256, 256)
    assert torch.equal(trained["sam"], reloaded["sam"])
    assert torch.equal(trained["h"], reloaded["h"])
