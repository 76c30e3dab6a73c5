"""A lean start: the CLI's help needs no torch, a SAM checkpoint is read once, memory-mapped, into an uninitialised SAM."""

from __future__ import annotations

import subprocess
import sys

import torch


def test_help_does_not_import_torch_or_napari():
    code = ("import sys; from napari_autosam.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'napari', 'segment_anything.modeling', 'torchvision', 'qtpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sam_is_assigned_the_checkpoint_tensors_without_a_random_init(tmp_path, monkeypatch):
    from napari_autosam.sam import registry

    path = registry.tiny_checkpoint(tmp_path)
    built = []
    real = registry.SAM_BUILDERS["tiny"]

    def counting():
        probe = torch.zeros(3)
        torch.nn.init.normal_(probe)
        built.append(bool(probe.any()))  # did the random initialisers run?
        return real()

    monkeypatch.setitem(registry.SAM_BUILDERS, "tiny", counting)
    sam = registry.load_sam_checkpoint(path)
    assert built == [False]  # built once, without random initialisation
    assert not any(t.is_meta for t in (*sam.parameters(), *sam.buffers()))
    reference = torch.load(path, weights_only=True)
    for name, value in sam.state_dict().items():
        torch.testing.assert_close(value, reference[name], rtol=0, atol=0)
    torch.testing.assert_close(sam.pixel_mean.flatten(), torch.tensor([123.675, 116.28, 103.53]))
    assert not any(p.requires_grad for p in sam.parameters()) and not sam.training


def test_loading_sam_skips_segment_anythings_predictor_but_the_package_still_works(tmp_path):
    code = (
        "import sys\n"
        "from napari_autosam.sam.registry import load_sam_checkpoint, tiny_checkpoint\n"
        f"sam = load_sam_checkpoint(tiny_checkpoint({str(tmp_path)!r}))\n"
        "print('torchvision' in sys.modules, 'segment_anything.predictor' in sys.modules)\n"
        "from segment_anything import SamAutomaticMaskGenerator, sam_model_registry\n"
        "print(SamAutomaticMaskGenerator.__name__, sorted(sam_model_registry))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "False False"
    assert out[1] == "SamAutomaticMaskGenerator ['default', 'vit_b', 'vit_h', 'vit_l']"


def test_random_init_comes_back_after_the_build():
    from napari_autosam.sam._lean_import import no_random_init

    with no_random_init():
        inside = torch.nn.Linear(4, 4)
    torch.nn.init.normal_(inside.weight)
    assert inside.weight.std() > 0.1  # the initialisers work again
