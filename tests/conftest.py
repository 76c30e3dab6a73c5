"""Fixtures shared by the whole suite: an isolated cache and the tiny SAM."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    """One cache directory for the session, so the tiny SAM is written once."""
    return tmp_path_factory.mktemp("autosam-cache")


@pytest.fixture(autouse=True)
def _isolated_cache(session_cache, monkeypatch):
    """Never touch the user's real cache, and never reach the network for checkpoints."""
    monkeypatch.setenv("NAPARI_AUTOSAM_CACHE", str(session_cache))
    monkeypatch.setenv("NAPARI_AUTOSAM_CHECKPOINT_URL", "http://127.0.0.1:9/unreachable")
    monkeypatch.setenv("NAPARI_AUTOSAM_DEVICE", "cpu")
    # float32 unless a test asks otherwise: on a CPU with native bfloat16 "auto" picks bf16, whose sums depend on the
    # thread count, and byte-for-byte comparisons between processes (dask workers, the CLI) would differ by machine
    monkeypatch.setenv("NAPARI_AUTOSAM_PRECISION", "fp32")


@pytest.fixture(scope="session")
def tiny_sam(session_cache):
    """The frozen tiny SAM, loaded through the same path as official checkpoints."""
    import os

    from napari_autosam.progress import run
    from napari_autosam.sam.registry import load_sam

    os.environ["NAPARI_AUTOSAM_CACHE"] = str(session_cache)
    return run(load_sam("tiny", device="cpu"))


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A cache of this test's own, for tests that count what lands in it."""
    monkeypatch.setenv("NAPARI_AUTOSAM_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def sam(tiny_sam):
    """The session's frozen tiny SAM under the short name the engine tests use."""
    return tiny_sam
