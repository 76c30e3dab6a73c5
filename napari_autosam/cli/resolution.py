"""``--mpp`` / ``--level`` for ``segment``, ``train`` and ``evaluate``: read inputs at a working resolution.

A slide (a vendor format, a TIFF pyramid or an OME-Zarr folder, see
:mod:`napari_autosam.io.slides`) is always read through its pyramid at the
working resolution; other images are read as before unless ``--mpp`` or
``--level`` asks for a resolution (then they must be TIFFs, opened as
one-level slides).  The model's recorded resolution (its metadata
``"resolution"``) is the default; choosing another is said in one line.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["add_resolution_args", "load_samples_at", "open_input", "requested"]


def add_resolution_args(parser, *, what: str = "images") -> None:
    """Add the mutually exclusive ``--mpp`` and ``--level`` options."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--mpp", type=float, default=None, metavar="UM",
                       help=f"read {what} at this many µm per pixel (from the nearest finer pyramid level, "
                       "resampled); needs calibrated slides")
    group.add_argument("--level", type=int, default=None, metavar="N",
                       help=f"read {what} at pyramid level N as stored (0: full resolution)")


def requested(args) -> dict:
    """The ``working_image`` keywords the command line asks for (``{}``: none)."""
    return {k: v for k, v in (("mpp", getattr(args, "mpp", None)), ("level", getattr(args, "level", None)))
            if v is not None}


def _is_slide(path: Path) -> bool:
    from ..io.slides import SLIDE_SUFFIXES, is_slide_path

    if path.is_dir():
        return is_slide_path(path)
    name = path.name.lower()
    if not name.endswith(SLIDE_SUFFIXES):
        return False
    if not name.endswith((".tif", ".tiff")):
        return True
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return len(tif.series[0].levels) > 1
    except Exception:  # noqa: BLE001  an unreadable TIFF is reported by the normal reader
        return False


def open_input(path: Path, args, recorded: dict | None = None):
    """The image to process and its resolution.

    Returns
    -------
    (image, Resolution or None, note or None)
        ``image`` is lazy; the resolution is None for ordinary images read as
        they are; ``note`` is one line when the resolution differs from the
        model's ``recorded`` one.

    Raises
    ------
    ValueError
        Unreadable inputs and resolutions that cannot be had (one line each).
    """
    from ..io.images import ImageReadError, open_lazy
    from ..io.slides import open_slide
    from ..io.working import request_of, resolution_note, working_image

    asked = requested(args)
    if not asked and not _is_slide(path):
        try:
            return open_lazy(path), None, None
        except ImageReadError as exc:
            raise ValueError(exc.reason) from exc
    try:
        slide = open_slide(path)
    except ImageReadError as exc:
        raise ValueError(str(exc)) from exc
    if slide.vendor == "ome-zarr":  # zarr reads a missing chunk as blank without a word: say it
        from ..io.ngff import missing_level0_chunks

        gap = missing_level0_chunks(path)
        if gap:
            print(f"warning: {path.name}: {gap}", file=sys.stderr)
    image, resolution = working_image(slide, **(asked or request_of(recorded, slide)))
    note = resolution_note(resolution, recorded)
    return image, resolution, (f"{path.name}: {note}" if note else None)


def say(note: str | None) -> None:
    """Print a resolution note on stderr (one line)."""
    if note:
        print(f"note: {note}", file=sys.stderr)


def _mask_at(mask, image_shape: tuple[int, int], resolution, name: str):
    """The mask at the working resolution: as given when it matches, else picked from level 0 by nearest pixel."""
    import numpy as np

    if tuple(mask.shape[:2]) == tuple(image_shape):
        return mask
    d = resolution.downsample
    expected = (round(image_shape[0] * d), round(image_shape[1] * d))
    if any(abs(m - e) > d for m, e in zip(mask.shape[:2], expected)):
        raise ValueError(f"mask of {name} is {mask.shape[0]}×{mask.shape[1]}; expected the image's size at "
                         f"level 0 (about {expected[0]}×{expected[1]}) or at the working resolution "
                         f"({image_shape[0]}×{image_shape[1]})")
    rows = np.minimum(((np.arange(image_shape[0]) + 0.5) * d).astype(int), mask.shape[0] - 1)
    cols = np.minimum(((np.arange(image_shape[1]) + 0.5) * d).astype(int), mask.shape[1] - 1)
    return mask[np.ix_(rows, cols)]


def _geojson_mask(path, pixels, resolution):
    """A QuPath GeoJSON file (level-0 pixels) rasterised straight at the working resolution."""
    from ..io.geojson import Placement, read_geojson_labels

    placement = Placement(resolution.downsample if resolution is not None else 1.0)
    result = read_geojson_labels(path, pixels.shape[:2], placement=placement)
    for message in result.messages:
        say(message)
    return result.instances


#: Largest working image (pixels in a plane) that training reads whole; bigger slides need --mpp/--level.
MAX_TRAIN_PIXELS = 100_000_000


def _check_trainable(shape, resolution) -> None:
    """Refuse, in one line, a working image too big to be held in memory for training."""
    from ..io.working import describe

    height, width = (int(v) for v in shape[:2])
    if height * width > MAX_TRAIN_PIXELS:
        at = describe(resolution) if resolution is not None else "full resolution"
        raise ValueError(f"{height}×{width} pixels at {at} is too big to train on whole (over "
                         f"{MAX_TRAIN_PIXELS // 1_000_000} megapixels); choose a coarser --mpp or --level, "
                         "or train on regions exported from it")


def load_samples_at(images_dir, masks_dir, args, *, channels=None, recorded: dict | None = None, classes=None):
    """Training samples with the images read at the working resolution ``--mpp``/``--level`` asks for.

    Masks may be given at the images' full resolution (they are then picked
    by nearest pixel) or at the working resolution.  Without ``--mpp`` and
    ``--level`` (and no recorded resolution) this is
    :func:`napari_autosam.training.load_samples`.  ``classes`` (a ClassSet):
    masks keep their class ids.

    Returns
    -------
    (samples, resolution dict or None)
    """
    import numpy as np

    from ..io.geojson import is_geojson
    from ..io.images import IMAGE_SUFFIXES, ImageReadError, image_stem, pair_images_and_masks, read_mask
    from ..io.slides import SLIDE_SUFFIXES
    from ..training import load_samples
    from ..training.data import TrainingDataError, check_samples, samples_from_pair

    slide_only = tuple(s for s in SLIDE_SUFFIXES if s not in IMAGE_SUFFIXES)  # .svs, .ndpi, .mrxs, …
    pairs = pair_images_and_masks(images_dir, masks_dir, image_suffixes=IMAGE_SUFFIXES + slide_only)
    has_slides = any(Path(image).name.lower().endswith(slide_only) for image, _ in pairs)
    if not requested(args) and not recorded and not has_slides:
        return load_samples(images_dir, masks_dir, channels=channels, classes=classes), None
    samples, resolutions = [], []
    for image_path, mask_path in pairs:
        try:
            image, resolution, note = open_input(Path(image_path), args, recorded)
            say(note)
            _check_trainable(image.shape, resolution)
            pixels = np.asarray(image[...])
            mask = read_mask(mask_path) if not is_geojson(mask_path) else _geojson_mask(mask_path, pixels, resolution)
        except (ImageReadError, ValueError) as exc:
            raise TrainingDataError(f"{image_path}: {exc}") from exc
        if resolution is not None:
            mask = _mask_at(mask, pixels.shape[:2], resolution, Path(image_path).name)
            resolutions.append(resolution.to_dict())
        samples += samples_from_pair(pixels, mask, image_stem(image_path), source=f"{image_path} (mask {mask_path})",
                                     channels=channels, classes=classes)
    return check_samples(samples), (resolutions[0] if resolutions else None)
