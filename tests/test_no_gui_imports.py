"""Nothing outside napari_autosam._qt (and the demo's GUI half) imports napari or Qt."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import napari_autosam

GUI_MODULES = ("napari", "qtpy", "PyQt6", "PyQt5", "PySide6", "PySide2", "magicgui", "vispy")


def _non_gui_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(napari_autosam.__path__, "napari_autosam."):
        if info.name.startswith("napari_autosam._qt") or info.name == "napari_autosam.__main__":
            continue
        names.append(info.name)
    return names


def test_core_modules_never_import_napari_or_qt():
    modules = _non_gui_modules()
    assert {"napari_autosam._reader", "napari_autosam._writer", "napari_autosam._sample_data",
            "napari_autosam.annotations", "napari_autosam.cli.demo_command"} <= set(modules)
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {GUI_MODULES!r})\n"
        "print(' '.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "", f"GUI modules imported: {done.stdout.strip()}"


def test_readers_and_sample_data_stay_light():
    """napari imports these at start-up or on File ▸ Open: they must not pull in torch either."""
    script = (
        "import sys\n"
        "import napari_autosam._reader, napari_autosam._writer, napari_autosam._sample_data\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "False"
