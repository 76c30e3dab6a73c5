"""A machine where Qt cannot open a window: one line that says why, from the demo and the test session."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from napari_autosam import qt_platform

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's xcb platform is Linux's")


@pytest.mark.parametrize(("soname", "package"), [
    ("libxcb-icccm.so.4", "libxcb-icccm4"), ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
    ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"), ("libdbus-1.so.3", "libdbus-1-3"),
    ("libGL.so.1", "libgl1"), ("libxcb-render-util.so.0", "libxcb-render-util0"), ("libEGL.so.1.1.0", "libegl1"),
])
def test_a_missing_library_is_named_by_its_debian_package(soname, package):
    assert qt_platform.debian_package(soname) == package


LDD = """\
\tlinux-vdso.so.1 (0x00007ffd)
\tlibQt6XcbQpa.so.6 => /venv/PyQt6/Qt6/lib/libQt6XcbQpa.so.6 (0x00007f)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-icccm.so.4 => not found
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)
"""


def test_missing_libraries_make_one_line_with_the_apt_command():
    missing = qt_platform.missing_libraries(LDD)
    assert missing == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    line = qt_platform.explain(-6, "", "qt.qpa.plugin: From 6.5.0, xcb-cursor0 or libxcb-cursor0 is needed", missing)
    assert "\n" not in line
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1`" in line
    assert "cursor" not in line, "Qt's own hint names the wrong package; the line names what is missing"


@linux_only
def test_an_unreachable_display_is_one_line_not_an_abort(monkeypatch):
    pytest.importorskip("qtpy")
    monkeypatch.setenv("DISPLAY", ":987")  # no X server there
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    reason = qt_platform.problem()
    assert reason == "Qt cannot open a window: it cannot connect to the X display ':987'"
    from napari_autosam.cli.demo_command import why_no_window

    assert why_no_window() == reason  # the demo says this and runs headless instead


def test_other_platforms_are_not_probed(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setattr(subprocess, "run", None)  # a probe would fail loudly
    assert qt_platform.problem() is None


@linux_only
def test_a_test_session_without_a_working_qt_skips_gui_tests_with_the_reason(tmp_path):
    pytest.importorskip("pytestqt")
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_window.py").write_text(
        "def test_window(qtbot):\n    from qtpy.QtWidgets import QLabel\n    qtbot.addWidget(QLabel('x'))\n\n"
        "def test_plain():\n    assert True\n")
    env = {**os.environ, "DISPLAY": ":987", "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("QT_QPA_PLATFORM", None)
    child = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xvfb", "-p", "no:cacheprovider", "-q", "-rs",
                            str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    out = child.stdout + child.stderr
    assert child.returncode == 0, out
    assert "Fatal Python error" not in out
    assert "1 passed, 1 skipped" in out
    assert "GUI test not run: Qt cannot open a window: it cannot connect to the X display ':987'" in out
