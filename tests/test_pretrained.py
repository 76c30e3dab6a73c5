"""The ResNet prompt generators start from ImageNet weights fetched through torch's hub (served locally here)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest
import torch

from napari_autosam.models import resnet
from napari_autosam.models.checkpoint import load_checkpoint, save_checkpoint
from napari_autosam.models.prompt_generator import build_prompt_generator
from napari_autosam.training import TrainConfig, initial_model


@pytest.fixture
def weights_dir(tmp_path):
    """Fake 'ImageNet' weights for ResNet-18 under a torchvision-style name with their SHA-256 prefix."""
    torch.manual_seed(7)
    state = resnet.ResNetEncoder("resnet18").state_dict()
    state["fc.weight"] = torch.zeros(2, 2)  # classifier keys in the file are ignored
    served = tmp_path / "served"
    served.mkdir()
    raw = served / "raw.pth"
    torch.save(state, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    name = f"resnet18-{digest[:8]}.pth"
    raw.rename(served / name)
    return served, name, state


@pytest.fixture
def server(weights_dir):
    served, _, _ = weights_dir
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "torch-home" / "hub" / "checkpoints"


def test_a_new_resnet18_g_downloads_checks_and_caches_imagenet_weights(weights_dir, server, hub, monkeypatch):
    _, name, state = weights_dir
    monkeypatch.setattr(resnet, "weights_url", lambda arch: f"{server}/{name}")
    model = initial_model(TrainConfig(generator="resnet18", input_size=64))
    g = model.prompt_generator
    assert g.config == {"name": "resnet18", "input_size": 64}
    torch.testing.assert_close(g.backbone.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    assert (hub / name).is_file()
    with torch.no_grad():
        assert g.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 256, 64, 64)
    # a second new model reads the cache: the network is not needed any more
    monkeypatch.setattr(resnet, "weights_url", lambda arch: f"http://127.0.0.1:9/{name}")
    again = initial_model(TrainConfig(generator="resnet18", input_size=64, seed=1))
    torch.testing.assert_close(again.prompt_generator.backbone.conv1.weight, state["conv1.weight"])


def test_offline_without_the_file_is_one_line_naming_the_file_and_url(hub, monkeypatch):
    monkeypatch.setattr(resnet, "weights_url", lambda arch: "http://127.0.0.1:9/resnet18-f37072fd.pth")
    with pytest.raises(resnet.PretrainedWeightsError) as info:
        initial_model(TrainConfig(generator="resnet18", input_size=64))
    message = str(info.value)
    assert "\n" not in message and "resnet18-f37072fd.pth" in message and "http://127.0.0.1:9/" in message
    assert str(hub) in message


def test_a_file_whose_hash_does_not_match_its_name_is_refused(weights_dir, server, hub, monkeypatch):
    served, name, _ = weights_dir
    (served / name).rename(served / "resnet18-00000000.pth")
    monkeypatch.setattr(resnet, "weights_url", lambda arch: f"{server}/resnet18-00000000.pth")
    with pytest.raises(resnet.PretrainedWeightsError, match="failed to load"):
        initial_model(TrainConfig(generator="resnet18", input_size=64))


def test_loading_a_saved_resnet_model_never_downloads(tmp_path, hub, monkeypatch):
    def no_network(arch):
        raise AssertionError("a saved model must not fetch ImageNet weights")

    g = build_prompt_generator("resnet18", input_size=64)  # imagenet=False: random encoder, no network
    monkeypatch.setattr(resnet, "weights_url", no_network)
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, g, None)
    loaded = load_checkpoint(path)
    torch.testing.assert_close(loaded.prompt_generator.backbone.conv1.weight, g.backbone.conv1.weight)
