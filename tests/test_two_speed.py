"""Whole slides in two speeds: glass never read, h everywhere first, SAM on the unsure tiles within a budget."""

from __future__ import annotations

import numpy as np
import pytest

from napari_autosam.data.synthetic_slides import pattern
from napari_autosam.data.tissue_slides import glass
from napari_autosam.inference import Segmenter
from napari_autosam.inference.two_speed import ArraySink, LabelImageSink, SamPlan, plan_tiles, two_speed
from napari_autosam.io.labels_zarr import LabelImage
from napari_autosam.io.tissue import TissueMask, detect_tissue
from napari_autosam.progress import CancelToken, run

TILE, OVERLAP = 128, 32


class CountingImage:
    """A lazy image that records every window read from it."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape, self.dtype, self.ndim = array, array.shape, array.dtype, array.ndim
        self.reads: list[tuple[slice, ...]] = []

    def __getitem__(self, index):
        self.reads.append(index if isinstance(index, tuple) else (index,))
        return self.array[index]


@pytest.fixture(scope="module")
def slide():
    """A 320² brightfield image (3×3 tiles of 128): tissue over the top 180 rows, glass below."""
    truth = np.zeros((320, 320), bool)
    truth[:180] = True
    image = np.where(truth[..., None], np.tile(pattern(64, 64, seed=7), (5, 5, 1)), glass(320, 320))
    return image, truth


@pytest.fixture(scope="module")
def segmenter(sam):
    return Segmenter(sam)


def _tissue(truth: np.ndarray) -> TissueMask:
    return TissueMask(truth[::8, ::8].copy(), (8.0, 8.0), "given")


def _inside(read: tuple[slice, ...], box) -> bool:
    ys, xs = read[0], read[1]
    y0, y1, x0, x1 = box
    return ys.start >= y0 and ys.stop <= y1 and xs.start >= x0 and xs.stop <= x1


def test_glass_tiles_are_never_read_and_stay_zero(segmenter, slide, tmp_path):
    image, truth = slide
    counting = CountingImage(image)
    tissue = _tissue(truth)
    tiles, shares = plan_tiles(truth.shape, tissue, tile=TILE, overlap=OVERLAP)
    kept = [t for t, s in zip(tiles, shares) if s > 0]
    assert 0 < len(kept) < len(tiles)
    labels = {role: LabelImage.create(tmp_path / f"{role}.ome.zarr", truth.shape, np.uint8) for role in ("h", "autosam")}
    # the normalisation is given: computing it would sample the whole image
    from napari_autosam.io.normalize import Normalization

    result = run(two_speed(segmenter, counting, LabelImageSink(labels), tissue=tissue, tile=TILE, overlap=OVERLAP,
                           plan=SamPlan("none"), normalization=Normalization.identity()))
    assert result.count("skipped") == len(tiles) - len(kept) and result.count("h") == len(kept)
    assert len(counting.reads) == len(kept)
    assert all(any(_inside(r, t.window) for t in kept) for r in counting.reads)
    for record in result.tiles:
        if record.source == "skipped":
            y0, y1, x0, x1 = record.core
            assert not labels["h"].read_region(record.core).any()
            assert not truth[y0:y1, x0:x1].any()


def test_skipped_chunks_are_not_materialised(segmenter, tmp_path):
    """On a plane bigger than a chunk, the chunks under glass tiles are never written."""
    from napari_autosam.io import labels_zarr

    image = np.full((2048, 2048, 3), 242, np.uint8)
    image[:900, :900] = np.tile(pattern(100, 100, seed=1), (9, 9, 1))
    truth = np.zeros((2048, 2048), bool)
    truth[:900, :900] = True
    tissue = TissueMask(truth[::64, ::64].copy(), (64.0, 64.0), "given")
    labels = {"h": LabelImage.create(tmp_path / "h.ome.zarr", truth.shape, np.uint8)}
    from napari_autosam.io.normalize import Normalization

    result = run(two_speed(segmenter, image, LabelImageSink(labels), tissue=tissue, tile=1024, overlap=128,
                           plan=SamPlan("none"), normalization=Normalization.identity()))
    assert result.count("h") == 1 and result.count("skipped") == 3
    chunks = {p.relative_to(tmp_path / "h.ome.zarr" / "0").as_posix()
              for p in (tmp_path / "h.ome.zarr" / "0").rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert chunks <= {"0/0"}  # 1024² chunks: only the top-left one can hold labels
    assert labels_zarr.CHUNK == 1024


def test_h_first_then_sam_on_the_most_unsure(segmenter, slide):
    image, truth = slide
    tissue = _tissue(truth)
    sink = ArraySink(truth.shape)
    events = []
    result = run(two_speed(segmenter, image, sink, tissue=tissue, tile=TILE, overlap=OVERLAP,
                           plan=SamPlan("uncertain", share=0.5)), on_progress=events.append)
    phases = [e.phase for e in events]
    assert "sam" in phases and phases.index("sam") > max(i for i, p in enumerate(phases) if p == "h")
    tissue_records = [r for r in result.tiles if r.source != "skipped"]
    sam = [r for r in tissue_records if r.source == "sam"]
    assert len(sam) == int(np.ceil(0.5 * len(tissue_records)))
    assert min(r.uncertainty for r in sam) >= max(r.uncertainty for r in tissue_records if r.source == "h")
    # where only h ran, the best labels are h's
    for r in tissue_records:
        if r.source == "h":
            y0, y1, x0, x1 = r.core
            assert np.array_equal(sink.arrays["autosam"][y0:y1, x0:x1], sink.arrays["h"][y0:y1, x0:x1])
    # the foreground share is counted as the cores were written: that of the final AutoSAM labels
    assert result.foreground == pytest.approx((sink.arrays["autosam"] > 0).mean()) and result.foreground > 0
    # every tile's core says its own source, and glass outside the tissue tiles says "skipped"
    for r in result.tiles:
        y0, y1, x0, x1 = r.core
        assert result.source_at(y0, x0) == result.source_at(y1 - 1, x1 - 1) == r.source
    assert result.source_at(-1, 5) == result.source_at(5, truth.shape[1]) == "skipped"


def test_sam_budget_stops_cleanly(segmenter, slide):
    image, truth = slide
    tissue = _tissue(truth)
    ticks = iter(np.arange(0.0, 1000.0, 1.0))  # every clock reading is one second later

    result = run(two_speed(segmenter, image, ArraySink(truth.shape), tissue=tissue, tile=TILE, overlap=OVERLAP,
                           plan=SamPlan("all", seconds=2.5), clock=lambda: float(next(ticks))))
    n_tissue = result.count("h") + result.count("sam")
    assert result.stopped == "budget" and 0 < result.count("sam") < n_tissue
    assert any("budget" in m for m in result.messages)

    by_count = run(two_speed(segmenter, image, ArraySink(truth.shape), tissue=tissue, tile=TILE, overlap=OVERLAP,
                             plan=SamPlan("all", tiles=2)))
    assert by_count.count("sam") == 2 and by_count.stopped == ""


def test_cancel_keeps_what_was_done(segmenter, slide):
    image, truth = slide
    token = CancelToken()
    sink = ArraySink(truth.shape)

    def cancel_after_first_sam(event):
        if event.phase == "sam":
            token.cancel()

    result = run(two_speed(segmenter, image, sink, tissue=_tissue(truth), tile=TILE, overlap=OVERLAP,
                           plan=SamPlan("all"), cancel=token), on_progress=cancel_after_first_sam)
    assert result.cancelled and result.stopped == "cancelled"
    assert result.count("sam") == 1 and result.count("h") > 0


def test_plan_checks_its_words():
    with pytest.raises(ValueError, match="sam_on"):
        SamPlan("some")
    assert SamPlan("uncertain", share=0.2).wanted(10) == 2
    assert SamPlan("all", tiles=3).wanted(10) == 3
    assert SamPlan("none").wanted(10) == 0


def test_detected_tissue_drives_the_plan(slide):
    image, truth = slide
    tissue = detect_tissue(image[::4, ::4], (4.0, 4.0), (2.0, 2.0))
    assert tissue.kind == "brightfield" and 0.5 < tissue.fraction < 0.7
    tiles, shares = plan_tiles(truth.shape, tissue, tile=TILE, overlap=OVERLAP)
    for t, share in zip(tiles, shares):
        y0, y1, x0, x1 = t.core
        if truth[y0:y1, x0:x1].any():
            assert share > 0
