"""DICOM whole-slide images (a folder of .dcm instances or one of them), written with pydicom, read through OpenSlide."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pydicom", reason="the DICOM writer of these tests needs the 'test' extra (pydicom)")

from napari_autosam._reader import napari_get_reader  # noqa: E402
from napari_autosam.data.dicom_slides import write_dicom_wsi  # noqa: E402
from napari_autosam.data.synthetic_slides import pattern  # noqa: E402
from napari_autosam.io.slides import SlideReadError, is_slide_path, open_slide, slide_stem  # noqa: E402


@pytest.fixture(scope="module")
def dicom_slide(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dicom") / "case-7"
    image = pattern(768, 1024, seed=3)
    paths = write_dicom_wsi(folder, image, downsamples=(4,), tile=256, mpp=0.25)
    return folder, paths, image


def test_folder_and_file_open_as_one_multilevel_slide(dicom_slide):
    folder, paths, image = dicom_slide
    for given in (folder, paths[0], paths[1]):
        assert is_slide_path(given)
        slide = open_slide(given)
        assert slide.vendor == "dicom" and slide.backend == "openslide"
        assert [tuple(level.shape) for level in slide.levels] == [(768, 1024, 3), (192, 256, 3)]
        assert slide.downsamples == [1.0, 4.0]
        assert slide.mpp == pytest.approx((0.25, 0.25))
        window = np.asarray(slide.levels[0][100:164, 300:364])
        assert np.array_equal(window, image[100:164, 300:364])  # uncompressed: exact
        slide.close()
    assert slide_stem(paths[0]) == "case-7" and slide_stem(folder) == "case-7"


def test_napari_reader_takes_the_folder_and_a_file(dicom_slide):
    folder, paths, _ = dicom_slide
    for given in (folder, paths[0]):
        reader = napari_get_reader(str(given))
        assert reader is not None
        (data, kwargs, kind), = reader(str(given))
        assert kind == "image" and kwargs["multiscale"] and len(data) == 2
        assert kwargs["metadata"]["vendor"] == "dicom"


def test_broken_dicom_is_one_clear_line(tmp_path):
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"DICM" + b"\0" * 200)
    with pytest.raises(SlideReadError) as error:
        open_slide(broken)
    assert "broken.dcm" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(SlideReadError, match="none of its .dcm files"):
        open_slide(tmp_path)
    assert napari_get_reader(str(broken)) is None


def test_cli_segments_a_dicom_folder(dicom_slide, tmp_path, capsys):
    from napari_autosam.cli import main

    folder, _, _ = dicom_slide
    code = main(["segment", str(folder), "--out", str(tmp_path / "out"), "--sam", "tiny", "--level", "1", "--preview"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "case-7_h.tif").is_file()


def test_unsupported_file_lists_the_readers_own_suffixes(tmp_path, capsys):
    from napari_autosam.cli import main
    from napari_autosam.io.formats import READABLE_SUFFIXES

    (tmp_path / "notes.txt").write_text("hello")
    assert main(["segment", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "o"), "--sam", "tiny"]) != 0
    err = capsys.readouterr().err
    assert "unsupported file type" in err
    for suffix in READABLE_SUFFIXES:  # .svs, .ndpi, .dcm … as well as the plain images
        assert suffix in err
