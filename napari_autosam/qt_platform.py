"""Whether Qt can open a window on this machine, found out without letting Qt abort this process.

On Linux, Qt's ``xcb`` platform plugin needs system libraries that a minimal
machine lacks (``libxcb-icccm4``, ``libxcb-keysyms1``, …; installing ``xvfb``
does not bring them).  When one is missing, or no X display can be reached,
Qt does not raise: it aborts the whole process while the application is
created ("no Qt platform plugin could be initialized"), often with a hint
about ``libxcb-cursor0`` that names the wrong package.  :func:`problem` creates
the application in a child process instead and turns a failure into one line
that says what is missing and which packages bring it.  No Qt is imported
here; the demo and the test session ask before they start Qt.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

#: The child: print Qt's plugin folder (safe before an application exists), then create one.
_PROBE = """
import sys
from qtpy.QtCore import QLibraryInfo
try:
    plugins = QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)
except AttributeError:  # Qt 5
    plugins = QLibraryInfo.location(QLibraryInfo.PluginsPath)
print("plugins:", plugins, flush=True)
from qtpy.QtWidgets import QApplication
app = QApplication(sys.argv[:1])
print("platform:", app.platformName(), flush=True)
"""


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package that ships a shared library, by Debian's naming rule.

    ``libxcb-icccm.so.4`` → ``libxcb-icccm4``, ``libxkbcommon-x11.so.0`` →
    ``libxkbcommon-x11-0`` (a name ending in a digit takes a hyphen before the
    version), ``libGL.so.1`` → ``libgl1``.
    """
    match = re.fullmatch(r"(.+?)\.so\.(\d+)(?:\.\d+)*", soname)
    if not match:
        return soname
    name, version = match.group(1).lower(), match.group(2)
    return f"{name}-{version}" if name[-1].isdigit() else f"{name}{version}"


def missing_libraries(ldd_output: str) -> list[str]:
    """The shared libraries ``ldd`` reports as ``not found``, each once, in order."""
    missing = []
    for line in ldd_output.splitlines():
        match = re.match(r"\s*(\S+)\s+=>\s+not found", line)
        if match and match.group(1) not in missing:
            missing.append(match.group(1))
    return missing


def _missing_for_plugin(plugins: str) -> list[str]:
    """Libraries the ``xcb`` plugin under Qt's ``plugins`` folder cannot find (empty if ``ldd`` can't tell)."""
    plugin = Path(plugins) / "platforms" / "libqxcb.so"
    if not plugin.is_file():
        return []
    try:
        out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return missing_libraries(out)


def _uses_xcb() -> bool:
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    return sys.platform.startswith("linux") and (not platform or platform.split(":")[0].split(";")[0] == "xcb")


def explain(returncode: int, stdout: str, stderr: str, missing: list[str]) -> str:
    """One line for a child that could not create a Qt application."""
    if missing:
        packages = " ".join(dict.fromkeys(debian_package(name) for name in missing))
        return (f"Qt cannot open a window: its xcb platform plugin needs system libraries that are missing "
                f"({', '.join(missing)}); on Debian or Ubuntu install them with "
                f"`sudo apt-get install {packages}` (README.md lists every package napari needs)")
    display = os.environ.get("DISPLAY", "")
    if "connect to display" in stderr or not display:
        where = f"the X display {display!r}" if display else "an X display ($DISPLAY is not set)"
        return f"Qt cannot open a window: it cannot connect to {where}"
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and "Traceback" not in line]
    detail = next((line for line in lines if "qt.qpa" in line or "Error" in line), lines[-1] if lines else "")
    return f"Qt cannot open a window (the probe exited with status {returncode}): {detail}".rstrip(": ")


def problem(timeout: float = 60.0) -> str | None:
    """None when Qt can create its application here, else one line saying why not and what to install.

    Only Linux's ``xcb`` platform is probed (macOS and Windows bring their
    own); the probe is a child process, so a Qt abort never reaches the caller.
    """
    if not _uses_xcb():
        return None
    try:
        child = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"Qt cannot open a window: creating its application took more than {timeout:.0f} s"
    if child.returncode == 0 and "platform:" in child.stdout:
        return None
    if "No module named" in child.stderr:
        return "Qt cannot open a window: no Qt binding is installed (install the package with its [qt] extra)"
    plugins = re.search(r"^plugins: (.*)$", child.stdout, re.MULTILINE)
    missing = _missing_for_plugin(plugins.group(1)) if plugins else []
    return explain(child.returncode, child.stdout, child.stderr, missing)
