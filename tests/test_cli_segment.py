"""``napari-autosam segment`` end to end on small files with the tiny SAM."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_autosam.cli import main
from napari_autosam.data.synthetic import make_nuclei_image


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("NAPARI_AUTOSAM_CACHE", str(tmp_path_factory.getbasetemp() / "cli-cache"))
    monkeypatch.setenv("NAPARI_AUTOSAM_CHECKPOINT_URL", "http://127.0.0.1:9/unreachable")


@pytest.fixture(scope="module")
def gray_tif(tmp_path_factory):
    path = tmp_path_factory.mktemp("inputs") / "nuclei.tif"
    tifffile.imwrite(path, make_nuclei_image((100, 120), seed=4)[0])
    return path


def read(path):
    with tifffile.TiffFile(path) as tif:
        return tif.asarray(), tif.pages[0].is_tiled


def test_semantic_with_the_untrained_default(gray_tif, tmp_path, capsys):
    assert main(["segment", str(gray_tif), "--out", str(tmp_path / "out"), "--sam", "tiny", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "untrained default" in captured.err
    assert "nuclei.tif: 100×120" in captured.out and "agreement (Dice)" in captured.out
    autosam, _ = read(tmp_path / "out" / "nuclei_autosam.tif")
    h, _ = read(tmp_path / "out" / "nuclei_h.tif")
    assert autosam.shape == h.shape == (100, 120) and autosam.dtype == h.dtype == np.uint8
    assert set(np.unique(autosam)) <= {0, 1} and set(np.unique(h)) <= {0, 1}
    assert not (tmp_path / "out" / "nuclei_instances.tif").exists()


def test_tiled_instances_with_a_model_file_and_a_cache(gray_tif, tmp_path, capsys):
    from napari_autosam.inference import default_model
    from napari_autosam.models.checkpoint import save_checkpoint

    model = default_model()
    model_path = save_checkpoint(tmp_path / "g.safetensors", model.prompt_generator, model.surrogate, sam_variant="tiny")
    out, cache = tmp_path / "out", tmp_path / "embeddings"
    argv = ["segment", str(gray_tif), "--out", str(out), "--sam", "tiny", "--model", str(model_path), "--mode",
            "instances", "--no-refine", "--tile", "100", "--overlap", "32", "--cache-dir", str(cache), "--save-prob"]
    assert main(argv) == 0  # the 100×120 image: two tiles side by side
    assert "untrained" not in capsys.readouterr().err
    labels, tiled = read(out / "nuclei_instances.tif")
    assert tiled and labels.dtype == np.int32 and labels.shape == (100, 120)
    prob, _ = read(out / "nuclei_autosam_prob.tif")
    mask, _ = read(out / "nuclei_autosam.tif")
    assert prob.dtype == np.float32 and np.array_equal(mask, (prob > 0.5).astype(np.uint8))
    assert sorted(p.name for p in out.iterdir()) == [
        "nuclei_autosam.tif", "nuclei_autosam_prob.tif", "nuclei_h.tif", "nuclei_h_prob.tif", "nuclei_instances.tif"
    ]  # the scratch store is gone
    assert len(list(cache.rglob("*.safetensors"))) == 2  # one embedding per tile, for the next run


def test_rgb_png_and_channels(tmp_path, capsys):
    from skimage import io as skio

    rgb = make_nuclei_image((64, 80), seed=2, stain="he")[0]
    skio.imsave(tmp_path / "he.png", rgb, check_contrast=False)
    tifffile.imwrite(tmp_path / "two.tif", np.stack([rgb[..., 0], rgb[..., 2]]).astype(np.uint16))
    code = main(["segment", str(tmp_path / "he.png"), str(tmp_path / "two.tif"), "--out", str(tmp_path / "out"),
                 "--sam", "tiny", "--channels", "1,0"])
    assert code == 0
    assert read(tmp_path / "out" / "he_autosam.tif")[0].shape == (64, 80)
    assert read(tmp_path / "out" / "two_h.tif")[0].shape == (64, 80)


def test_bad_inputs_are_reported_and_the_rest_still_segmented(gray_tif, tmp_path, capsys):
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a tiff")
    code = main(["segment", str(tmp_path / "missing.tif"), str(broken), str(gray_tif), "--out", str(tmp_path),
                 "--sam", "tiny"])
    err = capsys.readouterr().err
    assert code == 1
    assert "missing.tif: no such file" in err and "broken.tif" in err
    # inputs from two folders: each keeps its folder (below their common parent) under --out
    assert (tmp_path / gray_tif.parent.name / "nuclei_autosam.tif").exists()
    assert "1 of 3 files done, 2 failed" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tile", "32"], "--tile"),
        (["--sam", "no-such-sam.pth"], "no-such-sam.pth"),
        (["--model", "no-such-model.safetensors"], "no-such-model"),
    ],
)
def test_bad_options_exit_with_a_message(gray_tif, tmp_path, capsys, extra, message):
    assert main(["segment", str(gray_tif), "--out", str(tmp_path), "--sam", "tiny", *extra]) == 1
    assert message in capsys.readouterr().err


def test_bad_channel_list_is_a_usage_error(gray_tif, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(gray_tif), "--out", str(tmp_path), "--channels", "red"])
    assert exc.value.code == 2


def test_model_store_brings_its_own_sam_and_a_mismatch_is_one_line(gray_tif, tmp_path, capsys):
    """--model STORE without --sam loads the SAM the model was trained for (offline: vit_b would fail)."""
    from napari_autosam.inference import default_model
    from napari_autosam.models.checkpoint import save_checkpoint
    from napari_autosam.models.store import ModelStore

    model = default_model()
    store = ModelStore(tmp_path / "models")
    version, path = store.reserve()
    save_checkpoint(path, model.prompt_generator, model.surrogate, sam_variant="tiny")
    store.release(version)
    store.activate(version)
    assert main(["segment", str(gray_tif), "--out", str(tmp_path / "out"), "--model", str(store.root)]) == 0
    assert (tmp_path / "out" / "nuclei_autosam.tif").is_file()
    other = save_checkpoint(tmp_path / "vitb.safetensors", model.prompt_generator, model.surrogate, sam_variant="vit_b")
    capsys.readouterr()
    assert main(["segment", str(gray_tif), "--out", str(tmp_path / "out2"), "--sam", "tiny", "--model", str(other)]) != 0
    err = capsys.readouterr().err
    assert "trained for SAM vit_b, but SAM tiny is loaded" in err and "Traceback" not in err
