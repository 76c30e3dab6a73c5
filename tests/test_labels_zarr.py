"""OME-Zarr label pyramids on disk: create, write tile by tile, pyramid, region update, read back."""

from __future__ import annotations

import os

import numpy as np
import pytest

from napari_autosam.io.atomic import atomic_directory
from napari_autosam.io.labels_zarr import (
    CHUNK,
    LabelImage,
    Placement,
    downsample_labels,
    labels_on_disk,
    labels_path,
    pyramid_shapes,
)
from napari_autosam.progress import run


def _random_labels(shape, seed=0, top=3):
    return np.random.default_rng(seed).integers(0, top, size=shape).astype(np.uint8)


def _chunk_inodes(path):
    """Inode of every chunk file, by relative path (a rewritten chunk gets a new inode)."""
    found = {}
    for root, _dirs, files in os.walk(path):
        for name in files:
            if not name.startswith("."):
                full = os.path.join(root, name)
                found[os.path.relpath(full, path)] = os.stat(full).st_ino
    return found


def test_threshold_and_names():
    assert not labels_on_disk((4096, 4096)) and labels_on_disk((4097, 4096))
    assert labels_path("out", "slide", "h").name == "slide_h.ome.zarr"
    assert pyramid_shapes((5000, 3001)) == [(5000, 3001), (2500, 1501), (1250, 751), (625, 376)]


def test_downsample_is_the_mode_of_each_2x2_block():
    block = np.array([[1, 1, 2, 3],
                      [0, 5, 3, 3],
                      [7, 8, 4, 4],
                      [9, 6, 5, 5]], np.int32)
    assert downsample_labels(block).tolist() == [[1, 3], [7, 4]]  # no majority → top-left; 2-2 tie → top-left
    odd = np.arange(15, dtype=np.uint16).reshape(3, 5)
    assert downsample_labels(odd).shape == (2, 3) and downsample_labels(odd).dtype == np.uint16


def test_create_write_pyramid_and_read_back_with_metadata(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    path = tmp_path / "slide_autosam.ome.zarr"
    placement = Placement((0.5, 0.5), (10.25, 20.25), "micrometer")
    image = LabelImage.create(path, (2600, 2100), np.uint8, placement, name="AutoSAM",
                              colors={1: (0, 229, 255, 255)}, attributes={"role": "autosam", "slide": "s.svs"})
    assert not any(p.is_file() for p in (path / "0").rglob("*") if not p.name.startswith(".")), "no chunk yet"
    source = _random_labels((2600, 2100))
    run(image.write_array(source))

    back = LabelImage.open(path)
    assert [lvl.shape for lvl in back.multiscale()] == [(2600, 2100), (1300, 1050), (650, 525)]
    assert back.levels[0].chunks == (CHUNK, CHUNK)
    assert np.array_equal(back.read_region((0, 2600, 0, 2100)), source)
    assert np.array_equal(np.asarray(back.levels[1]), downsample_labels(source))
    assert back.placement == placement and back.attributes == {"role": "autosam", "slide": "s.svs"}
    assert back.layer_transform() == {"scale": [0.5, 0.5], "translate": [10.25, 20.25]}

    meta = back.group.attrs.asdict()
    multiscales = meta["multiscales"][0]
    assert multiscales["version"] == "0.4"
    assert [a["unit"] for a in multiscales["axes"]] == ["micrometer", "micrometer"]
    level1 = {t["type"]: t for t in multiscales["datasets"][1]["coordinateTransformations"]}
    assert level1["scale"]["scale"] == [1.0, 1.0]
    assert level1["translation"]["translation"] == [10.5, 20.5], "level 1's pixel centres sit between level 0's"
    assert meta["image-label"]["colors"] == [{"label-value": 1, "rgba": [0, 229, 255, 255]}]
    specs = {type(spec).__name__ for node in Reader(parse_url(str(path)))() for spec in node.specs}
    assert {"Label", "Multiscales"} <= specs, "ome-zarr's own reader sees a multiscale label image"


def test_stack_levels_keep_every_slice(tmp_path):
    image = LabelImage.create(tmp_path / "s.ome.zarr", (3, 1500, 1100), np.int32)
    source = np.random.default_rng(1).integers(0, 50, size=(3, 1500, 1100)).astype(np.int32)
    run(image.write_array(source))
    back = LabelImage.open(tmp_path / "s.ome.zarr")
    assert back.levels[1].shape == (3, 750, 550) and back.levels[0].chunks == (1, CHUNK, CHUNK)
    assert np.array_equal(np.asarray(back.levels[1][2]), downsample_labels(source[2]))
    assert back.group.attrs["multiscales"][0]["axes"][0]["name"] == "z"
    assert back.layer_transform()["scale"] == [1.0, 1.0, 1.0]


def test_region_update_rewrites_only_its_chunks_and_pyramid_footprint(tmp_path):
    path = tmp_path / "r.ome.zarr"
    image = LabelImage.create(path, (4096, 4096), np.uint8)
    source = _random_labels((4096, 4096), seed=2, top=2)
    run(image.write_array(source))
    before = _chunk_inodes(path)

    image = LabelImage.open(path, mode="r+")
    box = (1000, 1100, 2100, 2200)
    patch = np.full((100, 100), 7, np.uint8)
    image.update_region(box, patch)

    after = _chunk_inodes(path)
    changed = {k for k in before if after.get(k) != before[k]}
    # level 0: rows 1000:1100 cross the chunk edge at 1024 → chunks (0, 2), (1, 2); level 1 (2048²):
    # rows 500:550, cols 1050:1100 → chunk (0, 1); level 2 (1024²): chunk (0, 0)
    expected_chunks = {("0", "0", "2"), ("0", "1", "2"), ("1", "0", "1"), ("2", "0", "0")}
    assert changed == {os.path.join(*c) for c in expected_chunks}
    assert len(before) == 16 + 4 + 1, "every chunk was written"
    expected = source.copy()
    expected[1000:1100, 2100:2200] = 7
    back = LabelImage.open(path)
    assert np.array_equal(np.asarray(back.levels[0]), expected)
    assert np.array_equal(np.asarray(back.levels[1]), downsample_labels(expected))
    assert np.array_equal(np.asarray(back.levels[2]), downsample_labels(downsample_labels(expected)))
    assert "pending" not in back.attributes


def test_an_interrupted_region_update_is_repaired_on_the_next_write(tmp_path):
    path = tmp_path / "p.ome.zarr"
    image = LabelImage.create(path, (2048, 2048), np.uint8)
    run(image.write_array(np.zeros((2048, 2048), np.uint8)))
    image.levels[0][0:10, 0:10] = 1  # as if the process died after level 0, before the pyramid
    image._set_pending({"box": [0, 10, 0, 10], "z": None})
    assert not np.asarray(LabelImage.open(path).levels[1]).any(), "read-only opening changes nothing"
    repaired = LabelImage.open(path, mode="r+")
    assert np.asarray(repaired.levels[1][0:5, 0:5]).all() and "pending" not in repaired.attributes


def test_bad_folders_and_regions_are_one_clear_line(tmp_path):
    import zarr

    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=2)
    with pytest.raises(ValueError, match="plain.zarr: not an OME-Zarr image \\(no multiscales metadata\\)"):
        LabelImage.open(tmp_path / "plain.zarr")
    with pytest.raises(ValueError, match="no such OME-Zarr folder"):
        LabelImage.open(tmp_path / "missing.ome.zarr")
    image = LabelImage.create(tmp_path / "x.ome.zarr", (100, 100), np.uint8)
    with pytest.raises(ValueError, match="outside the 100×100 labels"):
        image.update_region((90, 120, 0, 10), np.zeros((30, 10), np.uint8))
    with pytest.raises(ValueError, match="integer dtype"):
        LabelImage.create(tmp_path / "f.ome.zarr", (10, 10), np.float32)


def test_atomic_directory_leaves_nothing_on_failure_and_replaces_on_success(tmp_path):
    target = tmp_path / "out.ome.zarr"
    with atomic_directory(target) as tmp:
        LabelImage.create(tmp, (10, 10), np.uint8)
    assert LabelImage.open(target).shape == (10, 10)
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        LabelImage.create(tmp, (20, 20), np.uint8)
        raise RuntimeError("crash while writing")
    assert LabelImage.open(target).shape == (10, 10), "the old folder is untouched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ome.zarr"], "no temporary folder left"
    with atomic_directory(target) as tmp:
        LabelImage.create(tmp, (30, 30), np.uint8)
    assert LabelImage.open(target).shape == (30, 30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ome.zarr"]


def test_a_dead_writers_folder_is_removed_by_the_next_write(tmp_path):
    dead = tmp_path / ".out.ome.zarr.pid999999999-abc.incomplete"
    alive = tmp_path / f".out.ome.zarr.pid{os.getpid()}-def.incomplete"
    for folder in (dead, alive):
        (folder / "0").mkdir(parents=True)
    with atomic_directory(tmp_path / "out.ome.zarr") as tmp:
        LabelImage.create(tmp, (10, 10), np.uint8)
    assert not dead.exists() and alive.exists(), "only the folder of a process that is gone is removed"
    assert (tmp_path / "out.ome.zarr").is_dir()
