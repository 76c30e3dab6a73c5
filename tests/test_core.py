import pytest
import torch

from napari_autosam.device import autocast, available_devices, needs_grad_scaler, pick_device
from napari_autosam.io.atomic import atomic_path, atomic_write_text
from napari_autosam.progress import CancelToken, Progress, Stopwatch, run


def test_device_auto_prefers_the_environment_then_the_best_available(monkeypatch):
    monkeypatch.delenv("NAPARI_AUTOSAM_DEVICE", raising=False)
    assert pick_device().type == available_devices()[0]
    monkeypatch.setenv("NAPARI_AUTOSAM_DEVICE", "cpu")
    assert pick_device("auto") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_requesting_a_missing_device_names_what_is_available():
    with pytest.raises(ValueError, match="CUDA was requested.*available"):
        pick_device("cuda")
    with pytest.raises(ValueError, match="Unsupported device"):
        pick_device("xpu")


def test_autocast_is_a_no_op_off_cuda():
    with autocast("cpu"):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32
    assert not needs_grad_scaler("cpu")


def test_run_returns_the_generator_result_and_forwards_events():
    def task():
        clock = Stopwatch(3)
        for i in range(1, 4):
            yield clock.event("work", i, f"{i}/3", loss=1.0 / i)
        return "done"

    events = []
    assert run(task(), events.append) == "done"
    assert [e.step for e in events] == [1, 2, 3]
    assert events[-1].fraction == 1.0 and events[-1].eta == 0
    assert events[0].metrics == {"loss": 1.0}
    assert Progress("x").fraction is None


def test_cancel_token_is_shared_state():
    token = CancelToken()
    assert not token.cancelled
    token.cancel()
    assert token.cancelled


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = atomic_write_text(tmp_path / "a.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_atomic_files_get_ordinary_permissions(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "mask.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
