"""Bad input and faults through the Python API: the annotation store, prompts, loaders, caches, stores.

Each case checks a ValueError (or OSError for faults) naming the argument or
file and what was expected, and that the folder involved is unchanged.
"""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
import torch
from badinput import assert_nothing_changed, snapshot

from napari_autosam.annotations import AnnotationStore
from napari_autosam.inference import Segmenter
from napari_autosam.inference.testing import threshold_model
from napari_autosam.progress import run
from napari_autosam.sam.cache import EmbeddingCache


@pytest.fixture
def image():
    return np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)


def _labels(shape=(24, 32), dtype=np.int32):
    mask = np.zeros(shape, dtype)
    mask[4:12, 5:20] = 1
    return mask


# ------------------------------------------------------------------ the annotation store: masks


@pytest.mark.parametrize("mask, expected", [
    (np.full((24, 32), 0.7), "fractions (e.g. 0.7)"),
    (-_labels(), "negative labels (down to -1)"),
    (np.where(_labels() > 0, np.nan, 0.0), "NaN"),
    (np.zeros((24, 32, 3), np.uint8), "colour image"),
    (np.zeros((5, 5), np.uint8), "does not fit"),
    (np.zeros((24, 32), complex), "dtype complex"),
    (np.array([["a"] * 32] * 24), "dtype <U1"),
    (np.full((24, 32), 2**33, np.int64), "more than 2**32"),
], ids=["float-0.7", "negative", "nan", "rgb", "shape", "complex", "strings", "huge-labels"])
def test_store_refuses_masks_it_would_change(tmp_path, image, mask, expected):
    store = AnnotationStore(tmp_path / "store")
    with pytest.raises(ValueError, match="mask") as err:
        store.accept(image, mask)
    assert expected in str(err.value) and "binary mask" in str(err.value)
    assert snapshot(tmp_path) == {}


@pytest.mark.parametrize("mask", [_labels().astype(np.float32) * 3, _labels().astype(bool), _labels(dtype=np.int64) * 300],
                         ids=["whole-floats", "bool", "int64-labels"])
def test_store_keeps_valid_masks_exactly(tmp_path, image, mask):
    store = AnnotationStore(tmp_path)
    entry = store.accept(image, mask)
    saved = store.load(entry)[1]
    assert saved.dtype.kind == "u" and np.array_equal(saved, mask.astype(np.int64))
    assert entry.foreground_pixels == int(np.count_nonzero(mask))


def test_store_non_json_extra_writes_nothing_and_blocks_nothing(tmp_path, image):
    store = AnnotationStore(tmp_path)
    with pytest.raises(ValueError, match="model=<object"):
        store.accept(image, _labels(), model=object())
    assert snapshot(tmp_path) == {}
    assert store.accept(image, _labels(), model="v0001").revision == 1


@pytest.mark.parametrize("failing", ["record", "mask"])
def test_store_accept_is_all_or_nothing_on_a_full_disk(tmp_path, image, monkeypatch, failing):
    import napari_autosam.annotations as annotations

    store = AnnotationStore(tmp_path)
    store.accept(image[::-1].copy(), _labels())  # something that must survive
    before = snapshot(tmp_path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    target = "atomic_write_text" if failing == "record" else "tifffile"
    if failing == "record":
        monkeypatch.setattr(annotations, "atomic_write_text", full)
    else:
        monkeypatch.setattr(annotations.tifffile, "imwrite", full)
    with pytest.raises(OSError) as err:
        store.accept(image, _labels())
    assert err.value.errno == errno.ENOSPC, target
    assert_nothing_changed(before, snapshot(tmp_path))
    assert before == snapshot(tmp_path)
    monkeypatch.undo()
    assert store.accept(image, _labels()).revision == 1  # the failed accept blocks nothing
    assert len(store) == 2


def test_store_leftovers_of_a_dead_accept_are_cleaned_and_never_block(tmp_path, image):
    store = AnnotationStore(tmp_path)
    first = store.accept(image, _labels())
    (tmp_path / "masks" / f".{first.key}_r002.tif.4242.part.tif").write_bytes(b"half")
    second = store.accept(image, _labels() * 2)
    assert second.revision == 2
    assert not [p for p in tmp_path.rglob("*.part*")]


@pytest.mark.parametrize("record, expected", [
    ("{not json", "unreadable"),
    ("[]", "not a napari-autosam annotation record"),
    (json.dumps({"format": "napari-autosam-annotations/1", "entries": {"a": 1}}), "list of entries"),
    (json.dumps({"format": "napari-autosam-annotations/1", "entries": [{"key": "k"}]}), "entry 0: an entry lacks"),
    (json.dumps({"format": "napari-autosam-annotations/1", "entries": [
        {"key": "k", "revision": "one", "image": "i", "mask": "m", "shape": [2, 2], "created": ""}]}), "non-integer"),
], ids=["not-json", "a-list", "entries-a-dict", "missing-keys", "typed-revision"])
def test_store_record_that_is_broken_names_the_file(tmp_path, record, expected):
    (tmp_path / "annotations.json").write_text(record)
    before = snapshot(tmp_path)
    with pytest.raises(ValueError, match="annotations.json") as err:
        AnnotationStore(tmp_path).entries()
    assert expected in str(err.value)
    assert snapshot(tmp_path) == before


def test_store_record_paths_must_stay_inside_the_store(tmp_path, image):
    store = AnnotationStore(tmp_path / "store")
    store.accept(image, _labels())
    record = json.loads(store.record_path.read_text())
    record["entries"][0]["image"] = "../../../../etc/passwd"
    store.record_path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="outside the store"):
        store.arrays()
    record["entries"][0]["image"] = "/etc/passwd"
    store.record_path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="outside the store"):
        store.arrays()


# ------------------------------------------------------------------ prompts


@pytest.fixture(scope="module")
def seg(sam):
    return Segmenter(sam, threshold_model(0.45))


@pytest.fixture(scope="module")
def rgb():
    return np.random.default_rng(3).integers(0, 255, (40, 60, 3), dtype=np.uint8)


@pytest.mark.parametrize("kwargs, expected", [
    ({"points": [(70, 10)]}, "points: (70, 10) is outside the 40×60 image"),
    ({"points": [(-1, 10)]}, "outside"),
    ({"points": [(np.nan, 10)]}, "points hold NaN"),
    ({"points": [(5, 5)], "labels": [2]}, "labels must be 0 (background) or 1 (foreground)"),
    ({"points": [(5, 5)], "labels": [-1]}, "labels must be 0"),
    ({"points": [(1, 2, 3)]}, "points must be N×2"),
    ({"points": "here"}, "points must be N×2"),
    ({"box": (30, 10, 20, 30)}, "box (30, 10, 20, 30) is inverted or has no area"),
    ({"box": (10, 10, 10, 30)}, "no area"),
    ({"box": (100, 100, 200, 200)}, "outside the 40×60 image"),
    ({"box": (1, 2, 3)}, "box must be 4 finite numbers"),
    ({"box": (0, 0, np.inf, 5)}, "box must be 4 finite numbers"),
], ids=["x-outside", "negative", "nan", "label-2", "label-minus", "three-coords", "a-string", "inverted-box",
        "zero-area", "box-outside", "three-numbers", "inf-box"])
def test_prompts_that_make_no_sense_are_refused(seg, rgb, kwargs, expected):
    with pytest.raises(ValueError) as err:
        seg.prompt(rgb, **kwargs)
    assert expected in str(err.value)


def test_a_box_reaching_past_the_edge_is_clipped_not_refused(seg, rgb):
    mask, _ = seg.prompt(rgb, box=(-5, 10, 80, 30))
    assert mask.shape == (40, 60)


# ------------------------------------------------------------------ segment and train through the API


def test_segment_takes_a_python_list(seg):
    plain = np.random.default_rng(1).integers(0, 200, (32, 40)).astype(np.uint8)
    from_list = run(seg.segment(plain.tolist()))
    assert np.array_equal(from_list.autosam_prob, run(seg.segment(plain)).autosam_prob)
    with pytest.raises(ValueError, match="image must be an array"):
        run(seg.segment([[1, 2], [3]]))


def test_empty_validation_set_says_so(sam, tmp_path):
    from napari_autosam.training import TrainConfig, samples_from_arrays, train

    samples = samples_from_arrays([np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)], [_labels((32, 32))])
    with pytest.raises(ValueError, match="validation set is empty"):
        run(train(sam, samples, val_samples=[], out=tmp_path / "m", config=TrainConfig(epochs=1)))
    assert snapshot(tmp_path) == {}


def test_colour_mask_array_says_what_a_mask_must_be():
    from napari_autosam.training import TrainingDataError, samples_from_arrays

    image = np.zeros((16, 16), np.uint8)
    with pytest.raises(TrainingDataError, match="must be H×W labels or a binary mask"):
        samples_from_arrays([image], [np.zeros((16, 16, 3), np.uint8)])


# ------------------------------------------------------------------ the embedding cache


@pytest.mark.parametrize("entry", [
    torch.zeros(1, 256, 32, 32), torch.full((1, 256, 64, 64), float("nan")), torch.zeros(1, 256, 64, 64, dtype=torch.int32),
    b"random bytes",
], ids=["wrong-shape", "all-nan", "integers", "random-bytes"])
def test_cache_evicts_and_recomputes_bad_entries(sam, tmp_path, rgb, entry):
    from safetensors.torch import save_file

    from napari_autosam.sam.cache import image_key

    cache = EmbeddingCache(sam, tmp_path)
    path = cache.directory / f"{image_key(rgb)}.safetensors"
    path.parent.mkdir(parents=True)
    if isinstance(entry, bytes):
        path.write_bytes(entry)
    else:
        save_file({"embedding": entry}, str(path))
    embedding = cache.get(rgb)
    assert tuple(embedding.shape) == (1, 256, 64, 64) and bool(torch.isfinite(embedding).all())
    assert cache.encoded == 1  # recomputed, not trusted
    fresh = EmbeddingCache(sam, tmp_path)
    assert torch.equal(fresh.get(rgb), embedding) and fresh.encoded == 0  # the good entry replaced the bad one


# ------------------------------------------------------------------ checkpoints and model stores


def test_crafted_input_size_is_refused_before_allocating(tmp_path):
    from safetensors.torch import save_file

    from napari_autosam.models.checkpoint import CheckpointError, load_checkpoint

    meta = {"format": "napari-autosam/1", "prompt_generator": {"name": "hardnet85", "input_size": 100000}}
    save_file({"g.x": torch.zeros(1)}, str(tmp_path / "big.safetensors"), metadata={"napari_autosam": json.dumps(meta)})
    with pytest.raises(CheckpointError, match="input_size is 100000; expected a multiple of 16 between 16 and 4096"):
        load_checkpoint(tmp_path / "big.safetensors")


def test_checkpoints_follow_the_umask(tmp_path):
    from napari_autosam.inference import default_model
    from napari_autosam.models.checkpoint import save_checkpoint

    model = default_model()
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "g.safetensors", model.prompt_generator, model.surrogate)
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o644


def test_stale_reservations_and_dead_writers_files_are_cleaned_and_never_versions(tmp_path):
    from napari_autosam.models.store import ModelStore

    root = tmp_path / "models"
    root.mkdir()
    for name in (".v0001.reserved", ".v0002.reserved", ".v0001.safetensors.abc123.part.safetensors",
                 ".active.json.x1.part.json"):
        (root / name).write_bytes(b"")
    store = ModelStore(root)
    assert store.versions() == [] and store.active is None
    live = ModelStore(root)
    name, path = live.reserve()  # cleans what nobody holds, then claims the first free number
    assert name == "v0001"
    assert sorted(p.name for p in root.iterdir()) == [".v0001.reserved", "store.lock"]
    other, _ = ModelStore(root).reserve()  # a second run while the first is alive: the next number
    assert other == "v0002"
    live.release(name)
    assert ModelStore(root).clean() == [root / ".v0002.reserved"]  # the second "run" never released: dead
    assert sorted(p.name for p in root.iterdir()) == ["store.lock"]


def test_download_leftover_of_a_killed_run_is_removed_at_the_next_download(tmp_path):
    import subprocess
    import sys

    from napari_autosam.sam import download as dl

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    leftover = tmp_path / f".weights.pth.pid{pid}-abcd.part.pth"
    leftover.write_bytes(b"\0" * 1000)
    mine = tmp_path / f".weights.pth.pid{os.getpid()}-live.part.pth"  # a live download's file stays
    mine.write_bytes(b"\0")
    source = tmp_path / "src.bin"
    source.write_bytes(b"payload")
    for _ in dl.download(source.as_uri(), tmp_path / "weights.pth", size=7):
        pass
    assert not leftover.exists() and mine.exists()
    assert (tmp_path / "weights.pth").read_bytes() == b"payload"


def test_cache_entries_half_written_by_a_dead_run_are_removed(sam, tmp_path):
    import subprocess
    import sys

    pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                             text=True).stdout)
    folder = EmbeddingCache(sam, tmp_path).directory
    folder.mkdir(parents=True)
    dead = folder / f".abc.safetensors.pid{pid}-x1.part.safetensors"
    live = folder / f".def.safetensors.pid{os.getpid()}-x2.part.safetensors"
    dead.write_bytes(b"\0" * 100)
    live.write_bytes(b"\0")
    EmbeddingCache(sam, tmp_path)
    assert not dead.exists() and live.exists()
