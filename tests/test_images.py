import numpy as np
import pytest
import tifffile
from skimage import io as skio

from napari_autosam.io.images import (
    IMAGE_SUFFIXES,
    ImageReadError,
    image_stem,
    open_lazy,
    pair_images_and_masks,
    pyramid_levels,
    read_image,
    read_mask,
    write_tiff,
)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize(
    ("shape", "dtype"), [((30, 40), np.uint16), ((30, 40, 3), np.uint8), ((5, 30, 40), np.float32), ((30, 40), np.int32)]
)
@pytest.mark.parametrize("compress", [True, False])
def test_tiff_round_trip(tmp_path, rng, shape, dtype, compress):
    array = (rng.random(shape) * 1000).astype(dtype)
    path = write_tiff(tmp_path / "a.tif", array, compress=compress)
    assert path == tmp_path / "a.tif"
    np.testing.assert_array_equal(read_image(path), array)
    assert [p.name for p in tmp_path.iterdir()] == ["a.tif"]  # no temporary file left behind


def test_ome_tiff_round_trip(tmp_path, rng):
    array = rng.integers(0, 4000, (3, 32, 48), dtype=np.uint16)
    path = write_tiff(tmp_path / "cells.ome.tif", array)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
    np.testing.assert_array_equal(read_image(path), array)
    assert image_stem(path) == "cells"


@pytest.mark.parametrize("suffix", [".png", ".bmp"])
@pytest.mark.parametrize("shape", [(20, 30), (20, 30, 3)])
def test_lossless_formats_round_trip(tmp_path, rng, suffix, shape):
    array = rng.integers(0, 256, shape, dtype=np.uint8)
    skio.imsave(tmp_path / f"a{suffix}", array, check_contrast=False)
    np.testing.assert_array_equal(read_image(tmp_path / f"a{suffix}"), array)


def test_jpeg_reads_back_close(tmp_path):
    array = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (32, 1))
    rgb = np.stack([array, array[::-1], array], axis=-1)
    skio.imsave(tmp_path / "a.JPG", rgb)
    read = read_image(tmp_path / "a.JPG")
    assert read.shape == rgb.shape and read.dtype == np.uint8
    assert np.abs(read.astype(int) - rgb).mean() < 4


def test_tiled_compressed_tiff_opens_lazily_as_zarr(tmp_path, rng):
    array = rng.integers(0, 65535, (700, 600), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "big.tif", array, tile=(128, 128), compression="zlib")
    lazy = open_lazy(tmp_path / "big.tif")
    assert not isinstance(lazy, np.ndarray)
    assert lazy.shape == array.shape and lazy.dtype == array.dtype
    np.testing.assert_array_equal(lazy[250:390, 130:517], array[250:390, 130:517])


def test_contiguous_tiff_opens_as_memmap(tmp_path, rng):
    array = rng.integers(0, 255, (4, 50, 60), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "raw.tif", array, photometric="minisblack")
    lazy = open_lazy(tmp_path / "raw.tif")
    assert isinstance(lazy, np.memmap)
    np.testing.assert_array_equal(lazy[2, 10:20], array[2, 10:20])


def test_pyramidal_tiff_levels(tmp_path, rng):
    base = rng.integers(0, 255, (512, 384), dtype=np.uint8)
    levels = [base, base[::2, ::2], base[::4, ::4]]
    with tifffile.TiffWriter(tmp_path / "slide.ome.tif") as tif:
        options = {"tile": (128, 128), "compression": "zlib"}
        tif.write(levels[0], subifds=len(levels) - 1, **options)
        for level in levels[1:]:
            tif.write(level, subfiletype=1, **options)
    read = pyramid_levels(tmp_path / "slide.ome.tif")
    assert [level.shape for level in read] == [level.shape for level in levels]
    for lazy, expected in zip(read, levels):
        np.testing.assert_array_equal(lazy[5:70, 3:50], expected[5:70, 3:50])
    np.testing.assert_array_equal(open_lazy(tmp_path / "slide.ome.tif")[:10, :10], base[:10, :10])


def test_single_level_file_has_one_level(tmp_path, rng):
    array = rng.integers(0, 255, (40, 30), dtype=np.uint8)
    write_tiff(tmp_path / "flat.tif", array)
    (level,) = pyramid_levels(tmp_path / "flat.tif")
    np.testing.assert_array_equal(level[:], array)


def test_corrupt_file_error_names_the_file(tmp_path, rng):
    good = tmp_path / "good.tif"
    write_tiff(good, rng.integers(0, 255, (64, 64), dtype=np.uint8), compress=False)
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good.read_bytes()[:200])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not a png")
    for path in (truncated, garbage):
        with pytest.raises(ImageReadError, match=path.name):
            read_image(path)
    with pytest.raises(ImageReadError, match="garbage.png"):
        open_lazy(garbage)
    not_tiff = tmp_path / "fake.tif"
    not_tiff.write_bytes(b"nope")
    with pytest.raises(ImageReadError, match="fake.tif"):
        open_lazy(not_tiff)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.tif")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ImageReadError, match="unsupported"):
        read_image(tmp_path / "notes.txt")


def test_read_mask_normalises_dtypes(tmp_path):
    labels = np.zeros((20, 20), np.uint16)
    labels[2:5, 2:5], labels[10:15, 8:12] = 1, 2
    write_tiff(tmp_path / "labels.tif", labels)
    np.testing.assert_array_equal(read_mask(tmp_path / "labels.tif"), labels)
    write_tiff(tmp_path / "float.tif", labels.astype(np.float32))
    assert read_mask(tmp_path / "float.tif").dtype == np.int32
    write_tiff(tmp_path / "fraction.tif", labels * 0.5)
    with pytest.raises(ImageReadError, match="fraction.tif"):
        read_mask(tmp_path / "fraction.tif")
    binary = (labels > 0).astype(np.uint8) * 255
    skio.imsave(tmp_path / "rgb_mask.png", np.stack([binary] * 3, axis=-1), check_contrast=False)
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb_mask.png"), binary)


def test_palette_png_mask_gives_indices(tmp_path):
    from PIL import Image

    indices = np.array([[0, 1, 1], [2, 2, 0]], np.uint8)
    image = Image.fromarray(indices, mode="P")
    image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    image.save(tmp_path / "palette.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "palette.png"), indices)
    assert read_image(tmp_path / "palette.png").shape == (2, 3, 3)  # as an image: its colours


def test_16bit_png_round_trip(tmp_path, rng):
    array = rng.integers(0, 65535, (16, 24), dtype=np.uint16)
    skio.imsave(tmp_path / "deep.png", array, check_contrast=False)
    np.testing.assert_array_equal(read_image(tmp_path / "deep.png"), array)


def test_compression_makes_smaller_files(tmp_path):
    array = np.zeros((256, 256), np.uint16)
    small = write_tiff(tmp_path / "small.tif", array, compress=True).stat().st_size
    large = write_tiff(tmp_path / "large.tif", array, compress=False).stat().st_size
    assert small < large / 10


def touch_all(directory, names):
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(b"")


def test_pairing_by_stem_with_mask_suffixes(tmp_path):
    touch_all(tmp_path / "images", ["a.tif", "b.png", "c.ome.tif", "d.tif", ".hidden.tif", "readme.txt"])
    touch_all(tmp_path / "masks", ["a.tif", "b_mask.png", "c_labels.tif", "d-Label.tiff", "extra.tif", "a_mask.tif"])
    pairs = pair_images_and_masks(tmp_path / "images", tmp_path / "masks")
    assert [(i.name, m.name) for i, m in pairs] == [
        ("a.tif", "a.tif"),  # an exact stem wins over a suffixed one
        ("b.png", "b_mask.png"),
        ("c.ome.tif", "c_labels.tif"),
        ("d.tif", "d-Label.tiff"),
    ]


def test_pairing_in_one_folder(tmp_path):
    touch_all(tmp_path, ["x.tif", "x_mask.tif", "y.png", "y_seg.png"])
    pairs = pair_images_and_masks(tmp_path, tmp_path)
    assert [(i.name, m.name) for i, m in pairs] == [("x.tif", "x_mask.tif"), ("y.png", "y_seg.png")]


def test_pairing_lists_images_without_masks(tmp_path):
    touch_all(tmp_path / "images", ["a.tif", "b.tif", "c.tif"])
    touch_all(tmp_path / "masks", ["b.tif"])
    with pytest.raises(ValueError, match=r"2 image\(s\).*a\.tif, c\.tif"):
        pair_images_and_masks(tmp_path / "images", tmp_path / "masks")


def test_pairing_rejects_ambiguous_masks_and_empty_folders(tmp_path):
    touch_all(tmp_path / "images", ["a.tif"])
    touch_all(tmp_path / "masks", ["a_mask.tif", "a_labels.png"])
    with pytest.raises(ValueError, match="several masks"):
        pair_images_and_masks(tmp_path / "images", tmp_path / "masks")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        pair_images_and_masks(tmp_path / "empty", tmp_path / "masks")
    with pytest.raises(FileNotFoundError):
        pair_images_and_masks(tmp_path / "nowhere", tmp_path / "masks")


def test_image_suffixes_are_lower_case_with_dots():
    assert all(s.startswith(".") and s == s.lower() for s in IMAGE_SUFFIXES)
    assert ".tif" in IMAGE_SUFFIXES and ".png" in IMAGE_SUFFIXES
