"""The annotation store: accepted corrections on disk, versioned, never overwritten."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_autosam.annotations import DATA_ENV, AnnotationStore, data_dir, default_annotation_dir


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)


@pytest.fixture
def mask():
    m = np.zeros((32, 40), dtype=np.int32)
    m[4:12, 5:20] = 1
    m[20:30, 22:35] = 2
    return m


def test_accept_writes_tiffs_and_record(tmp_path, image, mask):
    store = AnnotationStore(tmp_path / "store")
    entry = store.accept(image, mask, source="/data/slide.tif", layer_name="slide", slice_index=3, model="v0002")
    assert entry.revision == 1
    assert (store.root / entry.image).is_file() and (store.root / entry.mask).is_file()
    record = json.loads(store.record_path.read_text())
    assert record["entries"][0]["source"] == "/data/slide.tif"
    assert record["entries"][0]["slice_index"] == [3]
    assert record["entries"][0]["extra"] == {"model": "v0002"}
    img, msk = store.load(store.entries()[0])
    np.testing.assert_array_equal(img, image)
    np.testing.assert_array_equal(msk, mask)
    assert store.entries()[0].foreground_pixels == int((mask > 0).sum())


def test_second_correction_keeps_the_first(tmp_path, image, mask):
    store = AnnotationStore(tmp_path)
    first = store.accept(image, mask)
    better = mask.copy()
    better[0:3, 0:3] = 3
    second = store.accept(image, better)
    assert second.key == first.key and second.revision == 2
    assert (tmp_path / first.mask).is_file() and (tmp_path / second.mask).is_file()
    np.testing.assert_array_equal(store.load(first)[1], mask)  # the old mask is untouched
    assert len(store.history()) == 2
    assert [e.revision for e in store.entries()] == [2]  # training sees only the newest
    images, masks, names = store.arrays()
    assert len(images) == 1 and names == [second.name]
    np.testing.assert_array_equal(masks[0], better)


def test_different_images_are_different_entries(tmp_path, image, mask):
    store = AnnotationStore(tmp_path)
    store.accept(image, mask)
    store.accept(image[..., 0], mask > 0, slice_index=(0,))
    assert len(store) == 2
    assert store.entries()[1].shape == (32, 40)


def test_existing_files_are_never_overwritten(tmp_path, image, mask):
    store = AnnotationStore(tmp_path)
    entry = store.accept(image, mask)
    # Someone dropped a file where revision 2 would go: accepting must not clobber it, nor be blocked by it.
    squatter = tmp_path / "masks" / f"{entry.key}_r002.tif"
    squatter.write_bytes(b"precious")
    second = store.accept(image, mask)
    assert squatter.read_bytes() == b"precious"
    assert second.revision == 3 and len(store.history()) == 2


def test_mask_must_fit_image(tmp_path, image):
    with pytest.raises(ValueError, match="does not fit"):
        AnnotationStore(tmp_path).accept(image, np.zeros((5, 5)))


def test_no_partial_files_left(tmp_path, image, mask):
    store = AnnotationStore(tmp_path)
    store.accept(image, mask)
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_default_location_is_user_data_not_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert not str(default_annotation_dir()).startswith(str(tmp_path))
    assert "napari-autosam" in str(data_dir())
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "d"))
    assert AnnotationStore().root == tmp_path / "d" / "annotations"
