"""The npe2 manifest: napari finds the plugin (editable install and wheel), and every command imports."""

from __future__ import annotations

import filecmp
import importlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "napari.yaml"


def _manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


def test_package_manifest_is_a_link_to_the_top_level_one():
    link = ROOT / "napari_autosam" / "napari.yaml"
    assert link.is_symlink() and os.readlink(link) == "../napari.yaml"
    assert link.resolve() == MANIFEST.resolve()


def test_discovered_by_npe2_in_this_install():
    from npe2 import PluginManager

    pm = PluginManager()
    pm.discover(include_npe1=False)
    manifest = pm.get_manifest("napari-autosam")
    contributions = manifest.contributions
    assert [w.display_name for w in contributions.widgets] == ["AutoSAM"]
    assert {"napari-autosam.get_reader", "napari-autosam.get_geojson_reader"} <= {r.command for r in contributions.readers}
    assert [w.layer_types for w in contributions.writers] == [["labels"], ["labels"]]
    assert {s.key for s in contributions.sample_data} == {"nuclei_he", "nuclei_fluorescence", "nuclei_3d"}
    assert "*.tif" in contributions.readers[0].filename_patterns


def test_every_python_name_resolves_to_a_callable():
    commands = _manifest()["contributions"]["commands"]
    assert len(commands) >= 6
    for command in commands:
        module_name, _, attr = command["python_name"].partition(":")
        target = getattr(importlib.import_module(module_name), attr)
        assert callable(target), command["python_name"]


def test_every_contribution_names_a_declared_command():
    contributions = _manifest()["contributions"]
    ids = {c["id"] for c in contributions["commands"]}
    for kind in ("widgets", "readers", "writers", "sample_data"):
        for item in contributions[kind]:
            assert item["command"] in ids, (kind, item)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    [found] = out.glob("napari_autosam-*.whl")
    return found


def test_wheel_holds_the_real_manifest(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as zf:
        info = zf.getinfo("napari_autosam/napari.yaml")
        data = zf.read(info)
        entry_points = next(n for n in zf.namelist() if n.endswith("entry_points.txt"))
        assert "napari_autosam:napari.yaml" in zf.read(entry_points).decode()
    assert info.external_attr >> 28 != 0o12, "the wheel must hold the file, not a symlink"
    assert data == MANIFEST.read_bytes()


def test_npe2_reads_the_manifest_from_the_installed_wheel(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    installed = target / "napari_autosam" / "napari.yaml"
    assert installed.is_file() and not installed.is_symlink()
    assert filecmp.cmp(installed, MANIFEST, shallow=False)
    script = (
        "import sys, npe2, napari_autosam\n"
        "from importlib.metadata import distribution\n"
        f"assert napari_autosam.__file__.startswith({str(target)!r}), napari_autosam.__file__\n"
        "dist = distribution('napari-autosam')\n"
        f"assert str(dist.locate_file('')).startswith({str(target)!r}), dist.locate_file('')\n"
        "m = npe2.PluginManifest.from_distribution('napari-autosam')\n"
        "print(m.name, len(m.contributions.commands), len(m.contributions.sample_data))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["napari-autosam", str(len(_manifest()["contributions"]["commands"])), "3"]
