"""Fixtures shared by the whole suite: an isolated cache and the tiny SAM; GUI tests skipped with the reason
when Qt cannot open a window here (instead of Qt aborting the whole session)."""

from __future__ import annotations

import os

import pytest

# float32 unless a test asks otherwise: on a CPU with native bfloat16 "auto" picks bf16, whose sums depend on the
# thread count, and byte-for-byte comparisons between processes (dask workers, the CLI) would differ by machine.
# Set here, at import, so that module- and session-scoped fixtures (a dask cluster, a reference run) see it too;
# a dask worker restarted mid-test inherits the same value as the ones started before it.
os.environ["NAPARI_AUTOSAM_PRECISION"] = "fp32"

#: Fixtures that create a Qt application: a test using one needs a working Qt platform.
_QT_FIXTURES = {"qtbot", "qapp", "make_napari_viewer", "make_napari_viewer_proxy"}
_qt_problem: list[str] = []


def _needs_qt(item) -> bool:
    return item.get_closest_marker("gui") is not None or bool(_QT_FIXTURES & set(getattr(item, "fixturenames", ())))


@pytest.hookimpl(trylast=True)  # after pytest-xvfb has started its display
def pytest_collection_modifyitems(config, items):
    """Probe Qt once (in a child process) when GUI tests are selected; skip them with the reason if it fails.

    Without this, a missing system library makes Qt abort the whole pytest
    process ("Fatal Python error: Aborted") at the first GUI test.
    """
    gui = [item for item in items if _needs_qt(item)]
    if not gui:
        return
    from napari_autosam.qt_platform import problem

    reason = problem()
    if reason:
        _qt_problem.append(reason)
        for item in gui:
            item.add_marker(pytest.mark.skip(reason=f"GUI test not run: {reason}"))


def pytest_terminal_summary(terminalreporter):
    for reason in _qt_problem:
        terminalreporter.write_sep("=", "GUI tests were skipped", yellow=True)
        terminalreporter.write_line(reason)


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
    monkeypatch.setenv("NAPARI_AUTOSAM_PRECISION", "fp32")  # restored after a test that asks for another


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
