"""What the README tells a new user matches what CI and the program do."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_block(name: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- {name} -->\n```\n(.*?)\n```\n<!-- /{name} -->", text, re.DOTALL)
    assert match, f"README.md has no {name} block"
    return match.group(1)


@pytest.mark.skipif(shutil.which("bash") is None, reason="CI's script is a bash script")
def test_ci_installs_exactly_the_packages_the_readme_names():
    line = readme_block("apt-packages")
    assert line.startswith("sudo apt-get install ") and "\n" not in line, "one line a user can paste"
    named = line.removeprefix("sudo apt-get install ").split()
    ci = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--apt-packages"], capture_output=True, text=True,
                        timeout=30, check=True).stdout.split()
    assert ci == named
    assert {"xvfb", "libxcb-icccm4", "libxcb-keysyms1", "libxcb-cursor0"} <= set(named)
    assert "apt_packages=(" not in (ROOT / ".ci" / "run").read_text(), "one list, in the README"


def test_the_demo_takes_as_long_as_the_readme_and_help_say():
    from napari_autosam.cli import build_parser
    from napari_autosam.cli.demo_command import DURATION

    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert DURATION in readme
    assert DURATION in " ".join(build_parser().format_help().split())
    assert "minute" not in readme.replace(DURATION, "").split("## Command line")[0], "one figure, in one place"
