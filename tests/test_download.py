"""Checkpoint download and cache, against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import hashlib
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import platformdirs
import pytest

from napari_autosam.progress import Cancelled, CancelToken, run
from napari_autosam.sam import download as dl

PAYLOAD = random.Random(0).randbytes(200_000)
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
CHUNK = 16_384


class _Handler(BaseHTTPRequestHandler):
    """Serves ``/<kind>/<any name>`` where kind is good, corrupt, cutoff or hang; anything else is a 404."""

    def do_GET(self) -> None:
        server = self.server
        with server.lock:
            server.requests.append(self.path)
        kind = self.path.lstrip("/").partition("/")[0]
        body = server.payload
        try:
            if kind == "good":
                self._send(body, len(body))
            elif kind == "corrupt":
                middle = len(body) // 2
                self._send(body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :], len(body))
            elif kind == "cutoff":
                self._send(body[: len(body) // 3], len(body))
            elif kind == "hang":
                server.release.wait(5.0)
                self.send_error(404)
            else:
                self.send_error(404)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (cancel, time-out): nothing to do

    def _send(self, data: bytes, announced: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        for start in range(0, len(data), CHUNK):
            self.wfile.write(data[start : start + CHUNK])
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.payload = PAYLOAD
    srv.requests = []
    srv.lock = threading.Lock()
    srv.release = threading.Event()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5.0)


def _url(srv, kind: str, name: str = "weights.pth") -> str:
    host, port = srv.server_address[:2]
    return f"http://{host}:{port}/{kind}/{name}"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """Never touch the real user cache, never go through a proxy, never reach the official server."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(dl.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(dl.URL_ENV, "http://127.0.0.1:9/unused/")


@pytest.fixture
def fake_vit_b(monkeypatch, server):
    """Make "vit_b" the small payload, served by the local server."""
    info = dataclasses.replace(dl.OFFICIAL_CHECKPOINTS["vit_b"], size=len(PAYLOAD), md5=PAYLOAD_MD5)
    monkeypatch.setitem(dl.OFFICIAL_CHECKPOINTS, "vit_b", info)
    monkeypatch.setenv(dl.URL_ENV, _url(server, "good", ""))
    return info


def _drain(task):
    events = []
    result = run(task, events.append)
    return events, result


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ----------------------------------------------------------------------------- the table


def test_official_checkpoints_match_method_table():
    expected = {
        "vit_b": ("sam_vit_b_01ec64.pth", 375_042_383, "01ec64d29a2fca3f0661936605ae66f8"),
        "vit_l": ("sam_vit_l_0b3195.pth", 1_249_524_607, "0b3195507c641ddb6910d2bb5adee89c"),
        "vit_h": ("sam_vit_h_4b8939.pth", 2_564_550_879, "4b8939a88964f0f4ff5f5b2642c598a6"),
    }
    assert set(dl.OFFICIAL_CHECKPOINTS) == set(expected)
    for name, (filename, size, md5) in expected.items():
        info = dl.OFFICIAL_CHECKPOINTS[name]
        assert (info.name, info.filename, info.size, info.md5) == (name, filename, size, md5)
        assert info.url == "https://dl.fbaipublicfiles.com/segment_anything/" + filename
        # the official file names carry the first six hex digits of the MD5
        assert filename.removesuffix(".pth").endswith(md5[:6])


def test_md5sum(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(PAYLOAD)
    assert dl.md5sum(path, chunk=1000) == PAYLOAD_MD5


# ----------------------------------------------------------------------------- download()


@pytest.mark.parametrize("announce", [True, False], ids=["expected-size", "content-length"])
def test_download_good_file(server, tmp_path, announce):
    dest = tmp_path / "out" / "weights.pth"
    size = len(PAYLOAD) if announce else None
    task = dl.download(_url(server, "good"), dest, md5=PAYLOAD_MD5, size=size, chunk_size=CHUNK)
    events, result = _drain(task)

    assert result == dest
    assert dest.read_bytes() == PAYLOAD
    assert _files(dest.parent) == ["weights.pth"]
    assert len(events) >= 2
    steps = [e.step for e in events]
    assert steps == sorted(set(steps)) and steps[-1] == len(PAYLOAD)
    assert all(e.phase == "download" and e.total == len(PAYLOAD) for e in events)
    assert events[-1].fraction == 1.0


def test_corrupted_file_is_discarded(server, tmp_path):
    dest = tmp_path / "weights.pth"
    with pytest.raises(dl.DownloadError, match="checksum") as err:
        _drain(dl.download(_url(server, "corrupt"), dest, md5=PAYLOAD_MD5, size=len(PAYLOAD), chunk_size=CHUNK))
    assert PAYLOAD_MD5 in str(err.value)
    assert _files(tmp_path) == []


@pytest.mark.parametrize("size", [len(PAYLOAD), None], ids=["expected-size", "content-length"])
def test_cut_off_transfer_is_discarded(server, tmp_path, size):
    dest = tmp_path / "weights.pth"
    with pytest.raises(dl.DownloadError, match="cut off"):
        _drain(dl.download(_url(server, "cutoff"), dest, md5=None, size=size, chunk_size=CHUNK))
    assert _files(tmp_path) == []


def test_server_announcing_a_different_size_is_refused(server, tmp_path):
    dest = tmp_path / "weights.pth"
    with pytest.raises(dl.DownloadError, match="different file"):
        _drain(dl.download(_url(server, "good"), dest, size=len(PAYLOAD) + 1))
    assert _files(tmp_path) == []


def test_http_404_names_url_and_by_hand_path(server, tmp_path):
    dest = tmp_path / "weights.pth"
    url = _url(server, "missing")
    with pytest.raises(dl.DownloadError) as err:
        _drain(dl.download(url, dest))
    message = str(err.value)
    assert "404" in message and url in message and str(dest) in message
    assert _files(tmp_path) == []


def test_unreachable_server_names_file_url_and_path(tmp_path):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/sam_vit_b_01ec64.pth"
    dest = tmp_path / "sam_vit_b_01ec64.pth"
    with pytest.raises(dl.DownloadError) as err:
        _drain(dl.download(url, dest, timeout=2.0))
    message = str(err.value)
    assert "sam_vit_b_01ec64.pth" in message and url in message and str(dest) in message
    assert _files(tmp_path) == []


def test_silent_server_times_out(server, tmp_path):
    with pytest.raises(dl.DownloadError, match="timed out"):
        _drain(dl.download(_url(server, "hang"), tmp_path / "weights.pth", timeout=0.3))
    assert _files(tmp_path) == []


def test_cancel_mid_download_leaves_nothing(server, tmp_path):
    token = CancelToken()
    task = dl.download(_url(server, "good"), tmp_path / "weights.pth", size=len(PAYLOAD), cancel=token, chunk_size=CHUNK)
    first = next(task)
    assert 0 < first.step < len(PAYLOAD)
    assert any(name.endswith(".part.pth") for name in _files(tmp_path))  # the temp file exists meanwhile
    token.cancel()
    with pytest.raises(Cancelled):
        next(task)
    assert _files(tmp_path) == []


def test_abandoned_generator_leaves_nothing(server, tmp_path):
    task = dl.download(_url(server, "good"), tmp_path / "weights.pth", chunk_size=CHUNK)
    next(task)
    task.close()
    assert _files(tmp_path) == []


# ----------------------------------------------------------------------------- locations


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv(dl.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert dl.cache_dir() == tmp_path / "elsewhere"
    assert dl.checkpoint_dir() == tmp_path / "elsewhere" / "checkpoints"
    assert dl.checkpoint_dir().is_dir()

    monkeypatch.delenv(dl.CACHE_ENV)
    assert dl.cache_dir() == Path(platformdirs.user_cache_dir("napari-autosam"))


def test_checkpoint_url_mirror_override(monkeypatch):
    info = dl.OFFICIAL_CHECKPOINTS["vit_l"]
    monkeypatch.delenv(dl.URL_ENV)
    assert dl.checkpoint_url(info) == info.url
    for base in ("http://mirror.example/sam", "http://mirror.example/sam/"):
        monkeypatch.setenv(dl.URL_ENV, base)
        assert dl.checkpoint_url(info) == "http://mirror.example/sam/sam_vit_l_0b3195.pth"


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="vit_b, vit_l, vit_h, vit_b_histopathology"):
        _drain(dl.ensure_checkpoint("vit_xl"))


# ----------------------------------------------------------------------------- ensure_checkpoint()


def test_ensure_checkpoint_downloads_once_then_uses_cache(server, fake_vit_b, tmp_path):
    events, path = _drain(dl.ensure_checkpoint("vit_b"))
    assert path == tmp_path / "cache" / "checkpoints" / "sam_vit_b_01ec64.pth"
    assert path.read_bytes() == PAYLOAD
    assert events and events[-1].step == len(PAYLOAD)
    assert server.requests == ["/good/sam_vit_b_01ec64.pth"]
    assert _files(path.parent) == ["sam_vit_b_01ec64.pth", "sam_vit_b_01ec64.pth.md5ok"]

    events, again = _drain(dl.ensure_checkpoint("vit_b"))
    assert again == path and events == []
    # the fresh download was verified, so verify=True trusts the marker
    events, again = _drain(dl.ensure_checkpoint("vit_b", verify=True))
    assert again == path and events == []
    assert len(server.requests) == 1


def test_verify_checks_once_and_records_marker(server, fake_vit_b, tmp_path):
    path = dl.checkpoint_path("vit_b")
    path.write_bytes(PAYLOAD)  # placed by hand: no marker yet

    events, result = _drain(dl.ensure_checkpoint("vit_b", verify=True))
    assert result == path and events and all(e.phase == "verify" for e in events)
    assert (tmp_path / "cache" / "checkpoints" / "sam_vit_b_01ec64.pth.md5ok").is_file()

    events, _ = _drain(dl.ensure_checkpoint("vit_b", verify=True))
    assert events == []
    assert server.requests == []


def test_corrupted_cached_file_is_detected_and_replaced(server, fake_vit_b):
    path = dl.checkpoint_path("vit_b")
    path.write_bytes(bytes(len(PAYLOAD)))  # right size, wrong bytes

    with pytest.raises(dl.DownloadError, match="MD5"):
        _drain(dl.ensure_checkpoint("vit_b", verify=True, allow_download=False))
    assert server.requests == []

    _drain(dl.ensure_checkpoint("vit_b", verify=True))
    assert path.read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_wrong_size_cached_file_is_downloaded_again(server, fake_vit_b):
    path = dl.checkpoint_path("vit_b")
    path.write_bytes(PAYLOAD[:1000])
    _drain(dl.ensure_checkpoint("vit_b"))
    assert path.read_bytes() == PAYLOAD
    assert len(server.requests) == 1


def test_no_download_allowed_gives_by_hand_instructions(server, fake_vit_b, tmp_path):
    target = tmp_path / "by-hand"
    with pytest.raises(dl.DownloadError) as err:
        _drain(dl.ensure_checkpoint("vit_b", directory=target, allow_download=False))
    message = str(err.value)
    assert str(target / "sam_vit_b_01ec64.pth") in message
    assert dl.checkpoint_url(fake_vit_b) in message
    assert fake_vit_b.md5 in message
    assert server.requests == []


def test_failed_download_leaves_cache_empty(server, fake_vit_b, monkeypatch, tmp_path):
    monkeypatch.setenv(dl.URL_ENV, _url(server, "corrupt", ""))
    with pytest.raises(dl.DownloadError, match="checksum"):
        _drain(dl.ensure_checkpoint("vit_b", directory=tmp_path / "ckpt"))
    assert _files(tmp_path / "ckpt") == []


def test_file_url_mirror(fake_vit_b, monkeypatch, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / fake_vit_b.filename).write_bytes(PAYLOAD)
    monkeypatch.setenv(dl.URL_ENV, mirror.as_uri())
    _, path = _drain(dl.ensure_checkpoint("vit_b", directory=tmp_path / "ckpt"))
    assert path.read_bytes() == PAYLOAD
