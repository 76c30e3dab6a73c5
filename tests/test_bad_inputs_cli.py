"""Bad input and faults through the command line, in-process (the console script's ``main``).

Every case checks: a non-zero exit where it is an error, no traceback, a
message naming the file or option and what was expected, and that no file
was changed, lost or left half-written (the test folder before and after).
"""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import tifffile
import torch
from badinput import (
    assert_error,
    assert_nothing_changed,
    cli,
    gray_tif,
    malicious_pickle,
    plain_pickle,
    snapshot,
    truncated_zlib_tif,
)

from napari_autosam.data.synthetic import write_dataset


@pytest.fixture(scope="module")
def tiny_state(tiny_sam):
    return {k: v.clone() for k, v in tiny_sam.state_dict().items()}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from napari_autosam.inference import default_model
    from napari_autosam.models.checkpoint import save_checkpoint

    model = default_model()
    return save_checkpoint(tmp_path_factory.mktemp("model") / "g.safetensors", model.prompt_generator,
                           model.surrogate, sam_variant="tiny")


def _with_metadata(source, target, edit):
    """A copy of the checkpoint ``source`` whose metadata text is ``edit(metadata dict)`` (a str or a dict)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(source), framework="pt") as fh:
        meta = json.loads(fh.metadata()["napari_autosam"])
    new = edit(meta)
    save_file(load_file(str(source)), str(target),
              metadata={"napari_autosam": new if isinstance(new, str) else json.dumps(new)})
    return target


def _store_with_pointer(folder, model_file, pointer_text):
    folder.mkdir()
    (folder / "v0001.safetensors").write_bytes(model_file.read_bytes())
    (folder / "active.json").write_text(pointer_text)
    return folder


# ------------------------------------------------------------------ segment: input files


@pytest.mark.parametrize("name, content, expected", [
    ("random.tif", b"\x8f\x13" * 300, "not a readable TIFF"),
    ("random.png", bytes(range(256)) * 4, "not a readable PNG"),
    ("empty.tif", b"", "empty (0 bytes)"),
    ("notes.txt", b"hello", "unsupported file type"),
], ids=["random-tif", "random-png", "zero-bytes", "txt"])
def test_segment_bad_file_is_one_line_and_the_good_one_is_done(tmp_path, capfd, name, content, expected):
    bad = tmp_path / "in" / name
    good = gray_tif(tmp_path / "in" / "good.tif")
    bad.write_bytes(content)
    before = snapshot(tmp_path)
    code, text = cli(capfd, "segment", bad, good, "--out", tmp_path / "out", "--sam", "tiny")
    assert_error(code, text, name, expected, "1 of 2 files done, 1 failed")
    assert (tmp_path / "out" / "good_autosam.tif").is_file()
    assert_nothing_changed(before, snapshot(tmp_path), allow_new=("out/good_",))


def test_segment_truncated_zlib_tiff_fails_while_decoding_but_the_batch_goes_on(tmp_path, capfd):
    bad = truncated_zlib_tif(tmp_path / "in" / "cut.tif")
    good = gray_tif(tmp_path / "in" / "later.tif")
    before = snapshot(tmp_path)
    code, text = cli(capfd, "segment", bad, good, "--out", tmp_path / "out", "--sam", "tiny")
    assert_error(code, text, "cut.tif", "cannot be decoded", "1 of 2 files done")
    assert (tmp_path / "out" / "later_h.tif").is_file()
    assert_nothing_changed(before, snapshot(tmp_path), allow_new=("out/later_",))


@pytest.mark.parametrize("make, expected", [
    (lambda p: p / "missing.tif", "no such file"),
    (lambda p: (p / "folder.tif").mkdir() or p / "folder.tif", "not a file"),
    (lambda p: (tifffile.imwrite(p / "nan.tif", np.full((40, 40), np.nan, np.float32)), p / "nan.tif")[1],
     "nothing to segment"),
], ids=["missing", "a-folder", "all-nan"])
def test_segment_inputs_that_are_not_images(tmp_path, capfd, make, expected):
    (tmp_path / "in").mkdir()
    path = make(tmp_path / "in")
    before = snapshot(tmp_path)
    code, text = cli(capfd, "segment", path, "--out", tmp_path / "out", "--sam", "tiny")
    assert "Traceback" not in text and path.name in text and expected in text
    if expected == "nothing to segment":  # handled: empty masks and a note saying why
        assert code == 0 and (tmp_path / "out" / "nan_autosam.tif").is_file()
    else:
        assert_error(code, text, path.name)
        assert_nothing_changed(before, snapshot(tmp_path))
        assert not (tmp_path / "out").exists()  # every input failed: no empty --out folder left behind


def test_segment_refuses_clashing_output_names_before_any_work(tmp_path, capfd):
    a, b = gray_tif(tmp_path / "a" / "x.tif"), gray_tif(tmp_path / "b" / "x.tif", seed=1)
    png = tmp_path / "a" / "x.png"
    png.write_bytes((tmp_path / "a" / "x.tif").read_bytes())  # the content does not matter: refused first
    before = snapshot(tmp_path)
    code, text = cli(capfd, "segment", a, b, png, "--out", tmp_path / "o", "--sam", "no-such-sam")
    assert_error(code, text, str(a), str(png), "would both write x_")
    assert_nothing_changed(before, snapshot(tmp_path))
    assert not (tmp_path / "o").exists()


def test_segment_mirrors_input_folders_so_equal_names_do_not_overwrite(tmp_path, capfd):
    a, b = gray_tif(tmp_path / "a" / "x.tif"), gray_tif(tmp_path / "b" / "x.tif", seed=1)
    code, text = cli(capfd, "segment", a, b, a, "--out", tmp_path / "o", "--sam", "tiny")
    assert code == 0 and "2 of 2 files done" in text
    first, second = tifffile.imread(tmp_path / "o/a/x_h.tif"), tifffile.imread(tmp_path / "o/b/x_h.tif")
    assert first.shape == second.shape == (48, 56) and not (tmp_path / "o" / "x_h.tif").exists()


# ------------------------------------------------------------------ segment: --out and the environment


def _out_is_a_file(tmp_path):
    (tmp_path / "out").write_text("keep me")
    return tmp_path / "out", "is a file"


def _out_under_a_file(tmp_path):
    (tmp_path / "plain").write_text("keep me")
    return tmp_path / "plain" / "sub", "which is a file"


@pytest.mark.parametrize("setup", [_out_is_a_file, _out_under_a_file], ids=["file", "under-a-file"])
def test_segment_out_that_cannot_be_a_folder(tmp_path, capfd, setup):
    image = gray_tif(tmp_path / "in" / "img.tif")
    out, expected = setup(tmp_path)
    before = snapshot(tmp_path)
    code, text = cli(capfd, "segment", image, "--out", out, "--sam", "tiny")
    assert_error(code, text, "--out", str(out), expected)
    assert_nothing_changed(before, snapshot(tmp_path))


@pytest.mark.parametrize("err, expected", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied")],
                         ids=["read-only", "no-permission"])
def test_segment_out_that_cannot_be_written(tmp_path, capfd, monkeypatch, err, expected):
    import tempfile

    image = gray_tif(tmp_path / "in" / "img.tif")
    (tmp_path / "out").mkdir()

    def refuse(*args, **kwargs):  # what a read-only mount or a foreign folder answers (we may run as root)
        raise OSError(err, "refused", str(tmp_path / "out" / "probe"))

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    before = snapshot(tmp_path)
    code, text = cli(capfd, "segment", image, "--out", tmp_path / "out", "--sam", "tiny")
    assert_error(code, text, "--out", expected)
    assert_nothing_changed(before, snapshot(tmp_path))


def test_segment_full_disk_is_one_line_per_file_and_leaves_no_partial_output(tmp_path, capfd, monkeypatch):
    images = [gray_tif(tmp_path / "in" / f"img{i}.tif", seed=i) for i in range(2)]
    before = snapshot(tmp_path)
    real = tifffile.imwrite

    def full(path, *args, **kwargs):
        if "out" in str(path):
            real(path, np.zeros((4, 4), np.uint8))  # some bytes reach the disk, then it is full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", full)
    code, text = cli(capfd, "segment", *images, "--out", tmp_path / "out", "--sam", "tiny")
    assert_error(code, text, "img0.tif", "img1.tif", "no space left on the device", "0 of 2 files done")
    assert text.count("error: ") == 2
    assert_nothing_changed(before, snapshot(tmp_path))


def test_segment_interrupted_says_which_outputs_are_complete_and_keeps_nothing_of_the_file_it_stopped(
        tmp_path, capfd, monkeypatch):
    """Ctrl-C in the second file's writing: the first file's outputs are complete and said so; the second left none."""
    images = [gray_tif(tmp_path / "in" / f"img{i}.tif", seed=i) for i in range(3)]
    real = tifffile.imwrite

    def interrupted(path, *args, **kwargs):
        if "img1_" in str(path):
            real(path, *args, **kwargs)  # a file of it reaches the disk, then the user presses Ctrl-C
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    monkeypatch.setattr(tifffile, "imwrite", interrupted)
    code, text = cli(capfd, "segment", *images, "--out", tmp_path / "out", "--sam", "tiny")
    assert code == 130 and "interrupted during" in text and "img1.tif" in text
    assert "1 of 3 files done before it, their outputs complete" in text
    left = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert left == ["img0_autosam.tif", "img0_h.tif"], left


def test_segment_with_the_cache_env_pointing_at_a_file(tmp_path, capfd, monkeypatch):
    (tmp_path / "cachefile").write_text("not a folder")
    monkeypatch.setenv("NAPARI_AUTOSAM_CACHE", str(tmp_path / "cachefile"))
    image = gray_tif(tmp_path / "in" / "img.tif")
    before = snapshot(tmp_path)
    code, text = cli(capfd, "segment", image, "--out", tmp_path / "out", "--sam", "tiny")
    assert_error(code, text, "$NAPARI_AUTOSAM_CACHE", "cachefile", "is a file, not a folder")
    assert_nothing_changed(before, snapshot(tmp_path))


def test_segment_cache_dir_that_is_a_file(tmp_path, capfd):
    image = gray_tif(tmp_path / "in" / "img.tif")
    (tmp_path / "emb").write_text("x")
    before = snapshot(tmp_path)
    code, text = cli(capfd, "segment", image, "--out", tmp_path / "out", "--sam", "tiny", "--cache-dir", tmp_path / "emb")
    assert_error(code, text, "--cache-dir", "is a file")
    assert_nothing_changed(before, snapshot(tmp_path))


@pytest.mark.parametrize("option", [
    ["--batch-size", "0"], ["--batch-size", "-3"], ["--tile", "-1"], ["--overlap", "x"], ["--channels", "red"],
    ["--channels", "1,x"], ["--mode", "panoptic"],
], ids=lambda o: " ".join(o))
def test_segment_bad_option_values_are_refused_at_parsing(tmp_path, capfd, option):
    image = gray_tif(tmp_path / "in" / "img.tif")
    code, text = cli(capfd, "segment", image, "--out", tmp_path / "out", *option)
    assert code == 2 and "Traceback" not in text and option[0] in text
    assert not (tmp_path / "out").exists()


def test_segment_tile_too_small_names_the_option(tmp_path, capfd):
    image = gray_tif(tmp_path / "in" / "img.tif")
    code, text = cli(capfd, "segment", image, "--out", tmp_path / "out", "--tile", "32", "--sam", "tiny")
    assert_error(code, text, "--tile >= 64")


def test_segment_channel_that_the_image_lacks_is_one_line(tmp_path, capfd):
    image = gray_tif(tmp_path / "in" / "img.tif")
    code, text = cli(capfd, "segment", image, "--out", tmp_path / "out", "--sam", "tiny", "--channels", "5")
    assert_error(code, text, "img.tif", "channel")


# ------------------------------------------------------------------ SAM checkpoints


def _random_bytes(path, state):
    path.write_bytes(np.random.default_rng(0).bytes(4096))


def _zero_bytes(path, state):
    path.write_bytes(b"")


def _code_pickle(path, state):
    malicious_pickle(path, path.parent / "pwned")


def _not_torch(path, state):
    plain_pickle(path)


def _wrong_shape(path, state):
    bad = dict(state)
    bad["mask_decoder.iou_token.weight"] = torch.zeros(3, 7)
    torch.save(bad, path)


def _foreign_dict(path, state):
    torch.save({"encoder.weight": torch.zeros(2, 2)}, path)


def _truncated(path, state):
    torch.save(state, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("make, expected", [
    (_random_bytes, "not a SAM checkpoint"),
    (_zero_bytes, "empty (0 bytes)"),
    (_code_pickle, "refused for safety"),
    (_not_torch, "not a SAM checkpoint"),
    (_wrong_shape, "mask_decoder.iou_token.weight is (3, 7) in the file but"),
    (_foreign_dict, "image_encoder.patch_embed.proj.weight"),
    (_truncated, "not a SAM checkpoint"),
], ids=["random", "zero", "code-pickle", "plain-pickle", "wrong-shape", "foreign", "truncated"])
def test_sam_checkpoint_that_is_not_one(tmp_path, capfd, tiny_state, make, expected):
    image = gray_tif(tmp_path / "in" / "img.tif")
    sam = tmp_path / "sam.pth"
    make(sam, tiny_state)
    before = snapshot(tmp_path)
    code, text = cli(capfd, "segment", image, "--out", tmp_path / "out", "--sam", sam)
    assert_error(code, text, "sam.pth", expected)
    assert "weights_only" not in text and not (tmp_path / "pwned").exists()
    assert_nothing_changed(before, snapshot(tmp_path))


def test_sam_name_that_is_neither_a_variant_nor_a_file(tmp_path, capfd):
    image = gray_tif(tmp_path / "in" / "img.tif")
    code, text = cli(capfd, "segment", image, "--out", tmp_path / "out", "--sam", "vit_x")
    assert_error(code, text, "vit_x", "vit_b")


# ------------------------------------------------------------------ model checkpoints and stores


@pytest.mark.parametrize("edit, expected", [
    (lambda m: "{not json", "not JSON"),
    (lambda m: [1, 2], "expected an object"),
    (lambda m: {k: v for k, v in m.items() if k != "prompt_generator"}, "lacks prompt_generator"),
    (lambda m: {**m, "prompt_generator": {"name": "hardnet_small", "input_size": 100000}}, "input_size is 100000"),
    (lambda m: {**m, "prompt_generator": {"name": "hardnet_small", "input_size": "big"}}, "input_size is 'big'"),
    (lambda m: {**m, "prompt_generator": {"name": "resnet", "input_size": 256}}, "resnet"),
    (lambda m: {**m, "surrogate": {"hidden_channels": [10**7, 16]}}, "out of range"),
    (lambda m: {**m, "surrogate": "h"}, "surrogate settings"),
    (lambda m: {**m, "sam_variant": 7}, "sam_variant"),
], ids=["not-json", "a-list", "no-generator", "huge-input", "typed-input", "unknown-net", "huge-h", "h-a-string",
        "variant-int"])
def test_model_with_broken_metadata(tmp_path, capfd, model_file, edit, expected):
    image = gray_tif(tmp_path / "in" / "img.tif")
    bad = _with_metadata(model_file, tmp_path / "bad.safetensors", edit)
    before = snapshot(tmp_path)
    code, text = cli(capfd, "segment", image, "--out", tmp_path / "out", "--sam", "tiny", "--model", bad)
    assert_error(code, text, "bad.safetensors", expected)
    assert_nothing_changed(before, snapshot(tmp_path))


@pytest.mark.parametrize("content, expected", [
    (b"\x00" * 64, "not a napari-autosam checkpoint"),
    (b"", "not a napari-autosam checkpoint"),
], ids=["random", "empty"])
def test_model_file_that_is_not_a_checkpoint(tmp_path, capfd, content, expected):
    image = gray_tif(tmp_path / "in" / "img.tif")
    (tmp_path / "m.safetensors").write_bytes(content)
    code, text = cli(capfd, "segment", image, "--out", tmp_path / "out", "--sam", "tiny", "--model",
                     tmp_path / "m.safetensors")
    assert_error(code, text, "m.safetensors", expected)


@pytest.mark.parametrize("pointer, expected", [
    ('{"active": "v00', "not readable JSON"),
    ('["v0001"]', "holds"),
    ('{"active": 1}', "holds"),
    ('{"active": "v0042"}', "'v0042', which is not in the store"),
], ids=["truncated", "a-list", "typed", "missing-version"])
def test_model_store_with_a_broken_pointer(tmp_path, capfd, model_file, pointer, expected):
    image = gray_tif(tmp_path / "in" / "img.tif")
    store = _store_with_pointer(tmp_path / "models", model_file, pointer)
    before = snapshot(tmp_path)
    code, text = cli(capfd, "segment", image, "--out", tmp_path / "out", "--sam", "tiny", "--model", store)
    assert_error(code, text, "active.json", expected, '{"active": "vNNNN"}')
    assert_nothing_changed(before, snapshot(tmp_path))


def test_model_store_folder_without_versions(tmp_path, capfd):
    image = gray_tif(tmp_path / "in" / "img.tif")
    (tmp_path / "models").mkdir()
    code, text = cli(capfd, "segment", image, "--out", tmp_path / "out", "--sam", "tiny", "--model", tmp_path / "models")
    assert_error(code, text, "models", "without model versions")


# ------------------------------------------------------------------ train and evaluate


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("data"), 2, (48, 48), seed=3)


FAST = ["--sam", "tiny", "--epochs", "1", "--h-epochs", "0", "--min-steps", "0", "--input-size", "64", "--batch-size", "2",
        "--variants", "identity", "--device", "cpu"]


@pytest.mark.parametrize("option, expected", [
    (["--epochs", "0"], "--epochs"), (["--batch-size", "0"], "--batch-size"), (["--input-size", "100"], "multiple of 16"),
    (["--input-size", "100000"], "4096"), (["--val-fraction", "1.5"], "between 0 and 1"), (["--lr", "-1"], "--lr"),
    (["--lr", "nan"], "finite"), (["--patience", "-2"], "--patience"), (["--channels", "a,b"], "--channels"),
], ids=lambda o: " ".join(o) if isinstance(o, list) else None)
def test_train_bad_option_values_are_refused_at_parsing(tmp_path, capfd, dataset, option, expected):
    images, masks = dataset
    code, text = cli(capfd, "train", "--images", images, "--masks", masks, "--out", tmp_path / "m", *FAST, *option)
    assert code == 2 and "Traceback" not in text and expected in text
    assert not (tmp_path / "m").exists()


def _copy_masks(masks, target):
    target.mkdir()
    for path in masks.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def test_train_refuses_two_images_with_one_mask(tmp_path, capfd, dataset):
    images, masks = dataset
    mine = _copy_masks(images, tmp_path / "images")
    (mine / "img_000.png").write_bytes(b"whatever")
    before = snapshot(tmp_path)
    code, text = cli(capfd, "train", "--images", mine, "--masks", masks, "--out", tmp_path / "m", *FAST)
    assert_error(code, text, "img_000.tif", "img_000.png", "same stem")
    assert_nothing_changed(before, snapshot(tmp_path))


def _colour_mask(masks):
    from skimage import io as skio

    path = masks / "img_001.tif"
    labels = tifffile.imread(path)
    path.unlink()
    colour = np.stack([labels > 0, np.zeros_like(labels), labels > 0], -1).astype(np.uint8) * 200
    skio.imsave(masks / "img_001.png", colour, check_contrast=False)
    return "img_001.png", "must be H×W labels or a binary mask"


def _random_png_mask(masks):
    (masks / "img_001.tif").unlink()
    (masks / "img_001.png").write_bytes(np.random.default_rng(2).bytes(800))
    return "img_001.png", "not a readable PNG"


def _empty_masks(masks):
    for path in masks.iterdir():
        tifffile.imwrite(path, np.zeros((48, 48), np.uint8))
    return "img_000", "every mask is empty"


def _float_mask(masks):
    tifffile.imwrite(masks / "img_000.tif", np.full((48, 48), 0.7, np.float32))
    return "img_000.tif", "non-integer"


@pytest.mark.parametrize("spoil", [_colour_mask, _random_png_mask, _empty_masks, _float_mask],
                         ids=["colour", "random-png", "all-empty", "float-0.7"])
def test_train_bad_masks(tmp_path, capfd, dataset, spoil):
    images, masks = dataset
    mine = _copy_masks(masks, tmp_path / "masks")
    name, expected = spoil(mine)
    before = snapshot(tmp_path)
    code, text = cli(capfd, "train", "--images", images, "--masks", mine, "--out", tmp_path / "m", *FAST)
    assert_error(code, text, name, expected)
    assert_nothing_changed(before, snapshot(tmp_path))


def test_train_images_below_the_smallest_size_are_one_line_naming_them(tmp_path, capfd):
    from napari_autosam.training.data import MIN_TRAIN_SIDE

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    for i in range(3):  # 1×1 pixels: numpy flips of such an array once reached torch as a negative stride
        tifffile.imwrite(images / f"dot_{i}.tif", np.full((1, 1), 100, np.uint8))
        tifffile.imwrite(masks / f"dot_{i}.tif", np.ones((1, 1), np.uint8))
    before = snapshot(tmp_path)
    code, text = cli(capfd, "train", "--images", images, "--masks", masks, "--out", tmp_path / "m", *FAST)
    assert_error(code, text, "dot_0.tif", "dot_1.tif", "dot_2.tif", f"{MIN_TRAIN_SIDE}×{MIN_TRAIN_SIDE}", "1×1")
    assert "stride" not in text and len(text.strip().splitlines()) == 1
    assert_nothing_changed(before, snapshot(tmp_path))


@pytest.mark.parametrize("content, expected", [("code", "refused for safety"), ("random", "not a file of HarDNet")],
                         ids=["code-pickle", "random"])
def test_train_pretrained_backbone_that_is_not_weights(tmp_path, capfd, dataset, content, expected):
    images, masks = dataset
    weights = tmp_path / "hardnet.pth"
    if content == "code":
        malicious_pickle(weights, tmp_path / "pwned")
    else:
        weights.write_bytes(np.random.default_rng(0).bytes(1000))
    before = snapshot(tmp_path)
    code, text = cli(capfd, "train", "--images", images, "--masks", masks, "--out", tmp_path / "m", *FAST,
                     "--pretrained-backbone", weights)
    assert_error(code, text, "hardnet.pth", expected)
    assert "weights_only" not in text and not (tmp_path / "pwned").exists()
    assert_nothing_changed(before, snapshot(tmp_path), allow_new=("m/",))
    assert not [p for p in (tmp_path / "m").glob("*") if p.suffix == ".safetensors"] if (tmp_path / "m").exists() else True


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_sam_download_failure_is_one_line_in_train_and_evaluate(tmp_path, capfd, dataset, model_file, command):
    images, masks = dataset
    extra = ["--out", tmp_path / "m", "--epochs", "1", "--min-steps", "0"] if command == "train" else ["--model", model_file]
    before = snapshot(tmp_path)
    code, text = cli(capfd, command, "--images", images, "--masks", masks, "--sam", "vit_b", *extra)
    assert_error(code, text, "sam_vit_b_01ec64.pth", "--sam tiny")
    assert_nothing_changed(before, snapshot(tmp_path))


def test_train_init_with_broken_metadata(tmp_path, capfd, dataset, model_file):
    images, masks = dataset
    init = _with_metadata(model_file, tmp_path / "init.safetensors", lambda m: "{oops")
    code, text = cli(capfd, "train", "--images", images, "--masks", masks, "--out", tmp_path / "m", "--init", init)
    assert_error(code, text, "init.safetensors", "not JSON")


@pytest.mark.parametrize("where, expected", [("file", "not a folder"), ("under-file", "file, not a folder")])
def test_train_out_that_cannot_be_a_store(tmp_path, capfd, dataset, where, expected):
    images, masks = dataset
    (tmp_path / "plain").write_text("keep")
    out = tmp_path / "plain" if where == "file" else tmp_path / "plain" / "models"
    before = snapshot(tmp_path)
    code, text = cli(capfd, "train", "--images", images, "--masks", masks, "--out", out, *FAST)
    assert_error(code, text, "plain", expected)
    assert_nothing_changed(before, snapshot(tmp_path))


def test_train_missing_folder_and_half_a_validation_pair(tmp_path, capfd, dataset):
    images, masks = dataset
    code, text = cli(capfd, "train", "--images", tmp_path / "nope", "--masks", masks, "--out", tmp_path / "m", *FAST)
    assert_error(code, text, "nope", "not a directory")
    code, text = cli(capfd, "train", "--images", images, "--masks", masks, "--out", tmp_path / "m", *FAST,
                     "--val-images", images)
    assert_error(code, text, "--val-images and --val-masks")


def test_evaluate_model_store_pointer_that_is_a_list(tmp_path, capfd, dataset, model_file):
    images, masks = dataset
    store = _store_with_pointer(tmp_path / "models", model_file, "[]")
    code, text = cli(capfd, "evaluate", "--images", images, "--masks", masks, "--model", store, "--sam", "tiny")
    assert_error(code, text, "active.json", "holds []")


def test_console_script_runs_the_same_main():
    from importlib.metadata import entry_points

    import napari_autosam.cli

    scripts = [e for e in entry_points(group="console_scripts") if e.name == "napari-autosam"]
    assert scripts and scripts[0].value == "napari_autosam.cli:entry"  # main(), then _exit()
    assert napari_autosam.cli.main is __import__("badinput").main


def test_the_quick_exit_flushes_runs_atexit_and_keeps_the_code(tmp_path):
    import subprocess
    import sys

    marker, thread_marker = tmp_path / "atexit-ran", tmp_path / "thread-done"
    script = f"""
import atexit, pathlib, sys, threading, time
from napari_autosam.cli import _exit
atexit.register(lambda: pathlib.Path({str(marker)!r}).write_text("yes"))
if sys.argv[1] == "thread":  # a live non-daemon thread: the normal exit, which waits for it
    threading.Thread(target=lambda: (time.sleep(0.3), pathlib.Path({str(thread_marker)!r}).write_text("done"))).start()
sys.stdout.write("unflushed text")
_exit(3)
"""
    for mode in ("plain", "thread"):
        done = subprocess.run([sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=60)
        assert done.returncode == 3 and done.stdout == "unflushed text", (mode, done.stderr)
        assert marker.read_text() == "yes"
        marker.unlink()
    assert thread_marker.read_text() == "done"


@pytest.mark.parametrize("option, value, expected", [
    ("--sam-share", "2", "share must lie in [0, 1]"),
    ("--sam-budget", "0", "time budget must be positive"),
    ("--sam-tiles", "-1", "tile count must not be negative"),
])
def test_segment_refuses_an_impossible_sam_pass_before_loading_anything(tmp_path, capfd, option, value, expected):
    image = gray_tif(tmp_path / "in" / "img.tif")
    code, text = cli(capfd, "segment", image, "--out", tmp_path / "out", "--sam", "tiny", "--tissue", "off",
                     option, value)
    assert_error(code, text, option.lstrip("-").split("-")[0], expected)
    assert "SAM encoder" not in text and not (tmp_path / "out").exists()
