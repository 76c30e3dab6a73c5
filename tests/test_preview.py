"""The h(g(I)) preview: SAM's encoder never runs; tiles, stacks, instances and cancel as for a full run."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_autosam.cli import main
from napari_autosam.data.synthetic import make_nuclei_image, make_nuclei_stack
from napari_autosam.inference import Segmenter
from napari_autosam.inference.tiling import tile_grid
from napari_autosam.progress import CancelToken, run

pytestmark = pytest.mark.usefixtures("own_cache")


@pytest.fixture
def no_encoder(sam, monkeypatch):
    """Make any call of SAM's image encoder or mask decoder fail the test."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a preview must not run SAM")

    monkeypatch.setattr(sam.image_encoder, "forward", forbidden)
    monkeypatch.setattr(sam.mask_decoder, "forward", forbidden)
    return sam


def test_preview_matches_the_h_of_a_full_run_without_sam(sam):
    image = make_nuclei_image((96, 112), seed=2)[0]
    seg = Segmenter(sam)
    full = run(seg.segment(image))
    calls = []
    original = sam.image_encoder.forward
    sam.image_encoder.forward = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        preview = run(seg.segment(image, preview=True))
    finally:
        del sam.image_encoder.forward
    assert calls == []
    assert preview.preview and preview.autosam_prob is None and preview.autosam_mask is None
    assert preview.agreement == [] and [w.predicted_iou for w in preview.windows] == [None]
    np.testing.assert_allclose(preview.h_prob, full.h_prob, atol=1e-5)
    np.testing.assert_array_equal(preview.h_mask, full.h_mask)
    assert np.isfinite(full.windows[0].predicted_iou)  # the tiny SAM's IoU head is random: any number


def test_preview_tiles_stacks_instances_and_cancel(no_encoder):
    seg = Segmenter(no_encoder)
    image = make_nuclei_image((150, 170), seed=3)[0]
    tiled = run(seg.segment(image, tile=96, overlap=32, preview=True, mode="instances"))
    assert tiled.h_mask.shape == (150, 170) and tiled.autosam_mask is None
    grid = tile_grid((150, 170), 96, 32)
    assert tiled.instances is not None and len(grid) > 1
    assert [(w.window, w.core) for w in tiled.windows] == [(t.window, t.core) for t in grid]
    stack = make_nuclei_stack(3, (64, 64), seed=1)[0]
    result = run(seg.segment(stack, stack=True, preview=True))
    assert result.h_mask.shape == (3, 64, 64) and [w.z for w in result.windows] == [0, 1, 2]
    token = CancelToken()
    token.cancel()
    cancelled = run(seg.segment(image, tile=96, overlap=32, preview=True, cancel=token))
    assert cancelled.cancelled and cancelled.windows == []


def test_preview_needs_h(sam):
    from napari_autosam.inference import default_model
    from napari_autosam.models.checkpoint import ModelCheckpoint

    model = default_model()
    seg = Segmenter(sam, ModelCheckpoint(model.prompt_generator, None, {}))
    with pytest.raises(ValueError, match="preview needs the surrogate h"):
        run(seg.segment(np.zeros((32, 32), np.uint8) + np.arange(32, dtype=np.uint8), preview=True))


def test_cli_preview_writes_h_only(tmp_path, capsys):
    path = tmp_path / "nuclei.tif"
    tifffile.imwrite(path, make_nuclei_image((80, 90), seed=4)[0])
    out = tmp_path / "out"
    assert main(["segment", str(path), "--out", str(out), "--sam", "tiny", "--device", "cpu", "--preview",
                 "--geojson"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["nuclei_h.geojson", "nuclei_h.tif"]
    printed = capsys.readouterr().out
    assert "preview: h only" in printed and "AutoSAM" not in printed
