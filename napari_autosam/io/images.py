"""Read images and masks from disk, lazily when they are big, and pair images with their masks.

TIFF and OME-TIFF go through :mod:`tifffile` (lazy access through numpy
memory maps or tifffile's zarr store); PNG, JPEG and BMP through the
Pillow plugin of :mod:`imageio` (both come with scikit-image).  Every read
failure surfaces as :class:`ImageReadError` naming the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

from napari_autosam.io.atomic import atomic_path

__all__ = [
    "IMAGE_SUFFIXES",
    "MASK_STEM_SUFFIXES",
    "ImageReadError",
    "image_stem",
    "open_lazy",
    "pair_images_and_masks",
    "pyramid_levels",
    "read_image",
    "read_mask",
    "write_tiff",
]

from .formats import IMAGE_SUFFIXES, TIFF_SUFFIXES, accepted_inputs  # noqa: F401  (TIFF_SUFFIXES: re-exported)

MASK_STEM_SUFFIXES = ("_masks", "_mask", "_labels", "_label", "_seg", "-masks", "-mask", "-labels", "-label", "-seg")
"""Endings a mask's stem may carry beyond its image's stem (``img_001_mask.png`` pairs with ``img_001.tif``)."""


class ImageReadError(Exception):
    """A file could not be read as an image; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {str(self.path)!r}: {reason}")


def _suffix(path: str | os.PathLike, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> str | None:
    """The known image suffix of ``path`` (lower case), or None."""
    name = Path(path).name.lower()
    return next((s for s in suffixes if name.endswith(s)), None)


def image_stem(path: str | os.PathLike) -> str:
    """File name without its image suffix; ``a.ome.tif`` gives ``a`` (``Path.stem`` would give ``a.ome``)."""
    name = Path(path).name
    suffix = _suffix(path)
    return name[: len(name) - len(suffix)] if suffix else Path(path).stem


def _is_tiff(path: Path) -> bool:
    return _suffix(path) in TIFF_SUFFIXES


def _check_readable(path: str | os.PathLike, expected: str | None = None) -> Path:
    """``path`` if it is a file of a known image type; ``expected`` says what the caller takes (default: every input)."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "no such file" if not path.exists() else "not a file")
    if _suffix(path) is None:
        raise ImageReadError(path, f"unsupported file type; expected {expected or accepted_inputs()}")
    return path


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a whole image into memory.

    TIFF/OME-TIFF: the first series at full resolution, shaped as tifffile
    reports it (e.g. ``(Y, X)``, ``(Y, X, 3)``, ``(Z, Y, X)``, ``(C, Y, X)``).
    PNG/JPEG/BMP: ``(Y, X)``, ``(Y, X, 3)`` or ``(Y, X, 4)``.

    Raises
    ------
    ImageReadError
        Missing, unsupported, truncated or corrupt files.
    """
    return _read(path, keep_palette=False)


def _read(path: str | os.PathLike, *, keep_palette: bool, expected: str | None = None) -> np.ndarray:
    """Read a whole file; ``keep_palette`` returns palette PNG/BMP pixels as indices, not colours."""
    path = _check_readable(path, expected)
    try:
        if _is_tiff(path):
            return tifffile.imread(path)
        import imageio.v3 as iio

        if keep_palette:
            from PIL import Image

            with Image.open(path) as pil:
                if pil.mode == "P":
                    return np.asarray(pil)
        # Naming the plugin skips imageio's search through every plugin on corrupt files.
        return np.asarray(iio.imread(path, plugin="pillow"))
    except MemoryError:
        raise
    except Exception as error:  # the readers raise many unrelated types for bad files
        raise ImageReadError(path, _unreadable(path, error)) from error


def _unreadable(path: Path, error: BaseException) -> str:
    """Why ``path`` could not be read, in words (the readers' own messages can be cryptic)."""
    kind = {".tif": "TIFF", ".tiff": "TIFF", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(path.suffix.lower(),
                                                                                  path.suffix.lstrip(".").upper())
    try:
        if path.stat().st_size == 0:
            return "the file is empty (0 bytes)"
    except OSError:
        pass
    text = str(error)
    if "can not handle" in text or "cannot identify" in text or "not a TIFF" in text.lower():
        return f"not a readable {kind} image (the file is damaged or holds something else)"
    return f"not a readable {kind} image ({type(error).__name__}: {text})"


def _open_tiff_zarr(path: Path, level: int | None):
    """A read-only zarr array (``level`` given) or group (all levels) over the TIFF, read on demand."""
    import zarr

    store = tifffile.imread(path, aszarr=True, level=level)
    return zarr.open(store, mode="r")


def open_lazy(path: str | os.PathLike):
    """Open an image without reading its pixels; slicing the result reads only what is asked for.

    Returns a read-only ``numpy.memmap`` when the TIFF's first series is
    stored uncompressed and contiguously (slicing is then a plain file read),
    else a read-only zarr array over tifffile's store (tiles or strips are
    decoded as slices touch them; pyramids give their full-resolution level).
    The zarr store keeps the file open for the array's lifetime.  Non-TIFF
    formats cannot be read lazily and are returned by :func:`read_image`.

    Raises
    ------
    ImageReadError
        Missing, unsupported or corrupt files.
    """
    path = _check_readable(path)
    if not _is_tiff(path):
        return read_image(path)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            contiguous = series.dataoffset is not None
        if contiguous:
            try:
                return tifffile.memmap(path, mode="r")
            except ValueError:  # e.g. byte order or layout numpy cannot map; zarr still works
                pass
        return _open_tiff_zarr(path, level=0)
    except Exception as error:
        raise ImageReadError(path, _unreadable(path, error)) from error


def pyramid_levels(path: str | os.PathLike) -> list:
    """Resolution levels of a (pyramidal OME-)TIFF as lazy zarr arrays, largest first.

    A TIFF without sub-resolutions gives one level; non-TIFF files give
    ``[read_image(path)]``.  Levels share one open file.
    """
    path = _check_readable(path)
    if not _is_tiff(path):
        return [read_image(path)]
    try:
        with tifffile.TiffFile(path) as tif:
            n_levels = len(tif.series[0].levels)
        if n_levels == 1:
            return [_open_tiff_zarr(path, level=0)]
        group = _open_tiff_zarr(path, level=None)
        levels = [group[str(index)] for index in range(n_levels)]
    except Exception as error:
        raise ImageReadError(path, f"{type(error).__name__}: {error}") from error
    return sorted(levels, key=lambda level: -int(np.prod(level.shape)))


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a label or binary mask as an integer array.

    Integer masks are returned unchanged (0/1, 0/255 or labels 0..N);
    palette PNG/BMP masks give their palette indices;
    ``bool`` becomes ``uint8``; float masks holding whole numbers become
    ``int32``; masks saved as gray RGB(A) (all colour channels equal) lose
    their channel axis.

    Raises
    ------
    ImageReadError
        Unreadable files and masks that are not integer-valued.
    """
    mask = _read(path, keep_palette=True, expected=f"a mask image, one of {', '.join(IMAGE_SUFFIXES)}")
    if mask.ndim == 3 and mask.shape[-1] in (3, 4):
        colour = mask[..., :3]
        if np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 0], colour[..., 2]):
            mask = np.ascontiguousarray(colour[..., 0])
        else:
            raise ImageReadError(path, f"the mask is a colour image of shape {mask.shape}; a mask must be H×W "
                                 "labels or a binary mask (save the labels as a single-channel image)")
    if mask.dtype == bool:
        return mask.astype(np.uint8)
    if mask.dtype.kind == "f":
        if not np.all(np.isfinite(mask)) or not np.array_equal(mask, np.round(mask)):
            raise ImageReadError(path, "mask holds non-integer values; expected labels or a binary mask")
        return mask.astype(np.int32)
    if mask.dtype.kind not in "iu":
        raise ImageReadError(path, f"mask has dtype {mask.dtype}; expected integer labels or a binary mask")
    return mask


def write_tiff(path: str | os.PathLike, array: np.ndarray, *, compress: bool = True) -> Path:
    """Write ``array`` to a TIFF atomically (never a half-written file); return the path.

    ``compress`` uses lossless zlib (deflate).  Arrays whose last axis is 3
    or 4 and shorter than the others are stored as RGB(A) samples; a name
    ending in ``.ome.tif(f)`` gets OME-XML metadata.
    """
    array = np.asarray(array)
    path = Path(path)
    is_colour = array.ndim >= 3 and array.shape[-1] in (3, 4) and all(array.shape[-1] < s for s in array.shape[-3:-1])
    options = {
        "photometric": "rgb" if is_colour else "minisblack",
        "compression": "zlib" if compress else None,
        "ome": path.name.lower().endswith((".ome.tif", ".ome.tiff")),
    }
    if is_colour and array.shape[-1] == 4:
        options["extrasamples"] = ["unassalpha"]
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, **options)
    return path


def _image_files(directory: Path, suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[Path]:
    """Files in ``directory`` ending in one of ``suffixes``, sorted; hidden and partial files skipped."""
    if not directory.is_dir():
        raise FileNotFoundError(f"not a directory: {str(directory)!r}")
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".") and _suffix(p, suffixes))


def _geojson_files(directory: Path) -> list[Path]:
    """QuPath GeoJSON exports in ``directory`` (``<stem>.geojson``), which stand for masks (see io.geojson)."""
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.name.lower().endswith(".geojson"))


def _mask_key(stem: str) -> tuple[str, bool]:
    """The image stem a mask stem refers to, and whether a mask suffix was stripped."""
    lowered = stem.lower()
    for suffix in MASK_STEM_SUFFIXES:
        if lowered.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)], True
    return stem, False


def pair_images_and_masks(images_dir: str | os.PathLike, masks_dir: str | os.PathLike, *,
                          image_suffixes: Sequence[str] = IMAGE_SUFFIXES) -> list[tuple[Path, Path]]:
    """Match each image to its mask by file stem.

    A mask (an image, or a QuPath ``<stem>.geojson``) pairs with an image when its stem equals the image's stem, or
    equals it plus one of :data:`MASK_STEM_SUFFIXES` (matched
    case-insensitively; stems themselves are case-sensitive).  Suffixes like
    ``.ome.tif`` are not part of the stem.  An exact match wins over a
    suffixed one.  ``images_dir`` and ``masks_dir`` may be the same folder:
    files whose stem ends in a mask suffix are then masks, not images.
    Masks without an image are ignored.  ``image_suffixes`` are the file
    endings taken as images (slide readers pass the slide formats too).

    Returns
    -------
    list of (image_path, mask_path), sorted by image path.

    Raises
    ------
    FileNotFoundError
        A directory does not exist.
    ValueError
        No images, two masks matching one image equally well, or images
        without a mask (all such images are listed).
    """
    images_dir, masks_dir = Path(images_dir), Path(masks_dir)
    same_dir = images_dir.resolve() == masks_dir.resolve()
    images = [p for p in _image_files(images_dir, image_suffixes) if not (same_dir and _mask_key(image_stem(p))[1])]
    if not images:
        raise ValueError(f"no images ({', '.join(image_suffixes)}) found in {str(images_dir)!r}")
    candidates: dict[str, list[tuple[bool, Path]]] = {}
    for mask in _image_files(masks_dir) + _geojson_files(masks_dir):
        if same_dir and mask in images:
            continue
        key, suffixed = _mask_key(image_stem(mask))
        candidates.setdefault(key, []).append((suffixed, mask))
        if suffixed:  # the exact stem may itself be an image name ("a_seg" image with "a_seg" mask)
            candidates.setdefault(image_stem(mask), []).append((False, mask))
    by_stem: dict[str, Path] = {}
    for image in images:
        if image_stem(image) in by_stem:
            raise ValueError(f"images {by_stem[image_stem(image)].name!r} and {image.name!r} in {str(images_dir)!r} "
                             f"have the same stem {image_stem(image)!r}, so one mask would pair with both; "
                             "rename or move one of them")
        by_stem[image_stem(image)] = image
    pairs, missing = [], []
    for image in images:
        matches = sorted(candidates.get(image_stem(image), []), key=lambda match: match[0])
        if not matches:
            missing.append(image.name)
            continue
        if len(matches) > 1 and matches[0][0] == matches[1][0]:
            names = ", ".join(m.name for suffixed, m in matches if suffixed == matches[0][0])
            raise ValueError(f"image {image.name!r} matches several masks equally well: {names}")
        pairs.append((image, matches[0][1]))
    if missing:
        raise ValueError(f"{len(missing)} image(s) in {str(images_dir)!r} have no mask in {str(masks_dir)!r}: {', '.join(missing)}")
    return pairs


def write_array(path: Path, array, *, tile: int = 512) -> Path:
    """Write a numpy array with :func:`write_tiff`, or a zarr array as a tiled TIFF, one tile at a time."""
    if isinstance(array, np.ndarray):
        return write_tiff(path, array)

    def tiles():
        planes = [()] if array.ndim == 2 else [(z,) for z in range(array.shape[0])]
        for z in planes:
            for y in range(0, array.shape[-2], tile):
                for x in range(0, array.shape[-1], tile):
                    yield np.asarray(array[(*z, slice(y, y + tile), slice(x, x + tile))])

    nbytes = int(np.prod(array.shape)) * np.dtype(array.dtype).itemsize
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, tiles(), shape=array.shape, dtype=array.dtype, tile=(tile, tile),
                         compression="zlib", photometric="minisblack", bigtiff=nbytes > 2**31)
    return path
