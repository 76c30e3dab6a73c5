"""Where to correct next: the scores, their ranking on a slide with an unfamiliar region, the CSV and the CLI."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_autosam.cli import main
from napari_autosam.data.synthetic import make_nuclei_image, make_review_slide
from napari_autosam.inference import Segmenter
from napari_autosam.inference.outputs import SegmentationResult, WindowInfo
from napari_autosam.inference.review_scores import heatmap, review, score_regions, uncertainty, write_review_csv
from napari_autosam.inference.testing import threshold_model
from napari_autosam.io.geojson import Placement
from napari_autosam.progress import run

pytestmark = pytest.mark.usefixtures("own_cache")

TILE = 64
ODD = (TILE, 2 * TILE, 2 * TILE, 3 * TILE)  # (y0, y1, x0, x1) of the unfamiliar region


@pytest.fixture(scope="module")
def slide() -> np.ndarray:
    """3×3 tiles of fluorescent nuclei (what the threshold model 'knows': bright nuclei, dark background),
    one of them replaced by a washed-out stain whose intensities hover around the model's threshold."""
    plane, box = make_review_slide(TILE)
    assert box == ODD
    return plane


@pytest.mark.parametrize("preview", [False, True])
def test_an_unfamiliar_region_ranks_first(sam, slide, preview):
    seg = Segmenter(sam, threshold_model(0.5))
    regions, result = run(review(seg, slide, tile=TILE, overlap=0, preview=preview))
    assert len(regions) == 9 and sorted(r.region for r in regions) == sorted(w.core for w in result.windows)
    assert [r.score for r in regions] == sorted((r.score for r in regions), reverse=True)
    assert regions[0].region == ODD
    if preview:
        assert regions[0].uncertainty > 3 * regions[1].uncertainty
        assert all(r.disagreement is None and r.sam_doubt is None for r in regions)
    else:  # the tiny SAM has random weights: its own signals are noise, the same for every region
        assert all(r.disagreement is not None and r.sam_doubt is not None for r in regions)
    cells = heatmap(regions, slide.shape, cell=32)
    assert cells.shape == (6, 6) and cells[2, 4] == regions[0].score and not np.isnan(cells).any()


def test_scores_combine_the_signals_of_each_region():
    autosam = np.zeros((2, 8, 8), np.float32)
    h = np.zeros((2, 8, 8), np.float32)
    autosam[0, :4] = 1.0  # slice 0: AutoSAM sees an object, h half of it and unsure
    h[0, :2], h[0, 2:4] = 1.0, 0.5
    windows = [WindowInfo(z, (0, 8, 0, 8), (0, 8, 0, 8), iou) for z, iou in ((0, 0.75), (1, 1.2))]
    result = SegmentationResult(autosam, autosam > 0.5, h, h > 0.5, None, [], None, windows=windows)
    first, second = score_regions(result)
    assert first.z == 0 and first.disagreement == pytest.approx(1 - 2 * 16 / (32 + 16))
    assert first.uncertainty == pytest.approx(0.5 * (0 + 16 / 64)) == uncertainty(h[0]) / 2
    assert first.sam_doubt == pytest.approx(0.25)
    assert first.score == pytest.approx((first.disagreement + first.uncertainty + 0.25) / 3)
    assert second.z == 1 and second.score == 0.0  # both empty, SAM sure (IoU clipped to 1)


def test_csv_rows_are_level0_pixels_highest_first(sam, slide, tmp_path):
    seg = Segmenter(sam, threshold_model(0.5))
    regions, _ = run(review(seg, slide, tile=TILE, overlap=0, preview=True))
    path = write_review_csv(tmp_path / "review.csv", regions, placement=Placement(4.0), header={"downsample": 4})
    lines = path.read_text().splitlines()
    assert lines[0] == "# downsample: 4" and lines[1].startswith("x,y,width,height,score")
    x, y, w, hgt, score = (float(v) for v in lines[2].split(",")[:5])
    assert (x, y, w, hgt) == (ODD[2] * 4, ODD[0] * 4, TILE * 4, TILE * 4) and score == pytest.approx(regions[0].score, abs=1e-4)


def test_cli_review_writes_the_csv(tmp_path, capsys):
    image = tmp_path / "nuclei.tif"
    tifffile.imwrite(image, make_nuclei_image((128, 128), seed=1)[0])
    out = tmp_path / "review.csv"
    assert main(["review", str(image), "--out", str(out), "--sam", "tiny", "--device", "cpu", "--tile", "64",
                 "--overlap", "0", "--preview"]) == 0
    lines = out.read_text().splitlines()
    header = [line for line in lines if line.startswith("#")]
    assert "# level: 0" in header and "# downsample: 1" in header and "# mode: preview (h only)" in header
    rows = [line.split(",") for line in lines if not line.startswith("#")][1:]
    assert len(rows) == 4 and {(r[0], r[1]) for r in rows} == {("0", "0"), ("64", "0"), ("0", "64"), ("64", "64")}
    assert [float(r[4]) for r in rows] == sorted((float(r[4]) for r in rows), reverse=True)
    assert "4 region(s)" in capsys.readouterr().out
    assert main(["review", str(tmp_path / "missing.tif"), "--out", str(out), "--sam", "tiny"]) == 1
    assert "no such file" in capsys.readouterr().err


def test_each_slice_of_a_stack_is_one_region(sam, slide):
    stack = slide.reshape(3, TILE, 3 * TILE)  # the slide's rows as slices: the middle one holds the odd region
    regions, _ = run(review(Segmenter(sam, threshold_model(0.5)), stack, stack=True, preview=True))
    assert sorted(r.z for r in regions) == [0, 1, 2] and regions[0].z == 1
    assert all(r.region == (0, TILE, 0, 3 * TILE) for r in regions)


def test_cli_review_of_a_slide_at_a_level_writes_level0_pixels(tmp_path):
    from napari_autosam.data.synthetic_slides import pattern, write_svs

    svs = write_svs(tmp_path / "biopsy.svs", pattern(512, 768, seed=1), downsamples=(4, 16), mpp=0.25)
    out = tmp_path / "review.csv"
    assert main(["review", str(svs), "--out", str(out), "--sam", "tiny", "--device", "cpu", "--level", "1",
                 "--tile", "64", "--overlap", "0", "--preview"]) == 0
    lines = out.read_text().splitlines()
    assert "# level: 1" in lines and "# downsample: 4" in lines and "# um_per_px: 1" in lines
    rows = [[float(v) for v in line.split(",")[:4]] for line in lines if line[0].isdigit()]
    assert len(rows) == 2 * 3 and {r[2] for r in rows} == {256.0} and {r[3] for r in rows} == {256.0}
    assert sorted({r[0] for r in rows}) == [0.0, 256.0, 512.0] and sorted({r[1] for r in rows}) == [0.0, 256.0]
