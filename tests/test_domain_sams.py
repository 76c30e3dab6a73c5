"""Domain SAMs by name (PathoSAM, micro-sam, MedicoSAM, MedSAM): the table, download and cache, file layouts.

The files are the tiny SAM's weights in each publisher's layout (a plain state
dict, or ``{"model_state": ..., "decoder_state": ...}`` with ``sam.``-prefixed
keys), served from 127.0.0.1; vit_b's exact keys and shapes in the wrapped
layout are checked on meta tensors (no memory).
"""

from __future__ import annotations

import dataclasses
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch
import xxhash

from napari_autosam.paths import model_store_dir
from napari_autosam.progress import run
from napari_autosam.sam import checkpoints as cat
from napari_autosam.sam import download as dl
from napari_autosam.sam.registry import (
    SAM_BUILDERS,
    SamCheckpointError,
    _shape_mismatches,
    infer_variant,
    load_sam,
    sam_identity,
    sam_state,
    tiny_checkpoint,
)

NAME = "vit_b_histopathology"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads, srv.files, srv.requests = True, {}, []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5.0)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_AUTOSAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(dl.URL_ENV, raising=False)  # each entry's own (local) address
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="module")
def tiny_state(tmp_path_factory):
    return torch.load(tiny_checkpoint(tmp_path_factory.mktemp("tiny")), weights_only=True)


def _wrapped(state: dict, prefix: str = "sam.") -> dict:
    """micro-sam's layout: the SAM under ``model_state`` beside an instance decoder's weights."""
    decoder = {"decoder.blocks.0.block.0.weight": torch.randn(8, 16, 3, 3), "out_conv.bias": torch.zeros(3)}
    return {"model_state": {prefix + k: v for k, v in state.items()}, "decoder_state": decoder}


def _serve(server, tmp_path, monkeypatch, payload, *, name=NAME, variant="tiny", xxh128=None) -> bytes:
    """Serve ``payload`` (a dict to torch.save, or bytes) as ``name``, with its XXH128 in the table."""
    if not isinstance(payload, bytes):
        torch.save(payload, tmp_path / "payload.pt")
        payload = (tmp_path / "payload.pt").read_bytes()
    server.files[f"/{name}"] = payload
    host, port = server.server_address[:2]
    info = dataclasses.replace(cat.DOMAIN_CHECKPOINTS[name], url=f"http://{host}:{port}/{name}", variant=variant,
                               xxh128=xxh128 or xxhash.xxh128(payload).hexdigest())
    monkeypatch.setitem(cat.DOMAIN_CHECKPOINTS, name, info)
    return payload


def test_the_table_names_each_domain_sam_with_its_address_and_checksum():
    assert {"vit_b_histopathology", "vit_l_histopathology", "vit_h_histopathology", "vit_b_lm",
            "vit_b_medical_imaging", "medsam_vit_b"} <= set(cat.DOMAIN_CHECKPOINTS)
    for name, info in cat.DOMAIN_CHECKPOINTS.items():
        assert info.architecture in ("vit_b", "vit_l", "vit_h") and name.startswith(("vit_", "medsam"))
        assert info.description and info.filename not in {i.filename for i in cat.OFFICIAL_CHECKPOINTS.values()}
        if info.url is None:  # MedSAM: a shared folder, no direct address, no checksum
            assert info.page.startswith("https://") and info.checksum is None
        else:
            assert info.url.startswith("https://") and re.fullmatch(r"xxh128:[0-9a-f]{32}", info.checksum)
    assert cat.checkpoint_info("vit_l_histopathology").architecture == "vit_l"
    assert cat.checkpoint_names()[:3] == ["vit_b", "vit_l", "vit_h"]
    with pytest.raises(ValueError, match="vit_b_histopathology"):
        cat.checkpoint_info("vit_b_histo")


@pytest.mark.parametrize("layout", ["plain", "wrapped sam.", "wrapped"])
def test_a_domain_sam_downloads_checks_caches_and_loads_in_each_layout(server, tmp_path, monkeypatch, tiny_state,
                                                                       layout):
    payload = {"plain": tiny_state, "wrapped sam.": _wrapped(tiny_state), "wrapped": _wrapped(tiny_state, "")}[layout]
    _serve(server, tmp_path, monkeypatch, payload)
    sam = run(load_sam(NAME))
    identity = sam_identity(sam)
    assert identity.name == NAME and identity.lineage == NAME and identity.describe() == NAME
    assert identity.checkpoint_path == tmp_path / "cache" / "checkpoints" / f"{NAME}.pt"
    key = "image_encoder.blocks.1.attn.qkv.weight"
    assert torch.equal(sam.state_dict()[key], tiny_state[key])
    assert not any(p.requires_grad for p in sam.parameters())
    again = run(load_sam(NAME))  # from the cache: checked once, never fetched again
    assert len(server.requests) == 1 and sam_identity(again).lineage == NAME


def test_models_of_different_sams_live_apart(server, tmp_path, monkeypatch, tiny_state):
    _serve(server, tmp_path, monkeypatch, tiny_state)
    domain, official = sam_identity(run(load_sam(NAME))), sam_identity(run(load_sam("tiny")))
    assert model_store_dir(domain) != model_store_dir(official)
    assert model_store_dir(domain).name == NAME and model_store_dir(official).name == "tiny"


def test_a_corrupt_download_is_refused_by_its_checksum_and_leaves_nothing(server, tmp_path, monkeypatch, tiny_state):
    _serve(server, tmp_path, monkeypatch, tiny_state, xxh128="0" * 32)
    with pytest.raises(dl.DownloadError, match="XXH128 is [0-9a-f]{32}, expected 0{32}"):
        run(load_sam(NAME))
    folder = tmp_path / "cache" / "checkpoints"
    assert not folder.exists() or not any(folder.iterdir())


def test_a_cached_file_that_does_not_match_is_fetched_again(server, tmp_path, monkeypatch, tiny_state):
    _serve(server, tmp_path, monkeypatch, tiny_state)
    path = run(dl.ensure_checkpoint(NAME))
    path.write_bytes(b"something else")  # replaced behind our back; the marker no longer fits
    assert run(dl.ensure_checkpoint(NAME)) == path and len(server.requests) == 2
    assert torch.equal(torch.load(path, weights_only=True)["mask_decoder.iou_token.weight"],
                       tiny_state["mask_decoder.iou_token.weight"])


class _Config:  # a pickled object beside the weights, as a training checkpoint may hold
    pass


def test_a_checkpoint_with_pickled_objects_is_refused_unrun(server, tmp_path, monkeypatch, tiny_state):
    _serve(server, tmp_path, monkeypatch, {**_wrapped(tiny_state), "config": _Config()})
    with pytest.raises(SamCheckpointError, match="refused for safety"):
        run(load_sam(NAME))


def test_medsam_is_known_by_name_but_fetched_by_hand(tmp_path, tiny_state, monkeypatch):
    info = dataclasses.replace(cat.DOMAIN_CHECKPOINTS["medsam_vit_b"], variant="tiny")
    monkeypatch.setitem(cat.DOMAIN_CHECKPOINTS, "medsam_vit_b", info)
    with pytest.raises(dl.DownloadError, match="drive.google.com") as caught:
        run(load_sam("medsam_vit_b"))
    assert "medsam_vit_b.pth" in str(caught.value)
    folder = tmp_path / "cache" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_state, folder / "medsam_vit_b.pth")  # what the user does by hand
    assert sam_identity(run(load_sam("medsam_vit_b"))).lineage == "medsam_vit_b"


def test_vit_b_keys_and_shapes_in_the_wrapped_layout_fill_sam_vit_b():
    with torch.device("meta"):
        sam = SAM_BUILDERS["vit_b"]()
    state = sam.state_dict()
    inner = sam_state(_wrapped(state))
    assert set(inner) == set(state) and infer_variant(inner) == "vit_b" and not _shape_mismatches(sam, inner)


def test_download_and_info_name_the_domain_sams(server, tmp_path, monkeypatch, tiny_state, capsys):
    from napari_autosam.cli import main

    _serve(server, tmp_path, monkeypatch, _wrapped(tiny_state))
    assert main(["download", NAME]) == 0
    assert f"{NAME}: " in capsys.readouterr().out
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"sam {NAME}\s+\S*{NAME}\.pt", out) and "medsam_vit_b" in out and "PathoSAM" in out


def test_a_model_trained_on_a_domain_sam_asks_for_it_by_name(tmp_path):
    from napari_autosam.models.checkpoint import save_checkpoint
    from napari_autosam.models.prompt_generator import build_prompt_generator
    from napari_autosam.models.store import sam_for_model

    g = build_prompt_generator("hardnet_small", input_size=64)
    path = save_checkpoint(tmp_path / "m.safetensors", g, sam_variant="vit_b", sam_name=NAME)
    assert sam_for_model(None, path) == NAME and sam_for_model("tiny", path) == "tiny"
