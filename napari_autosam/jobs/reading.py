"""Reading inputs at a working resolution: the rules behind ``--mpp`` / ``--level`` of ``segment``, ``train``,
``evaluate`` and ``review``.

A slide (a vendor format, a TIFF pyramid or an OME-Zarr folder, see
:mod:`napari_autosam.io.slides`) is always read through its pyramid at the
working resolution; other images are read as they are unless a resolution
is asked for (then they must be TIFFs, opened as one-level slides).  The
model's recorded resolution (its metadata ``"resolution"``) is the default;
choosing another is said in one line (``note: …`` on stderr).
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["MAX_TRAIN_PIXELS", "check_trainable", "geojson_mask_at", "is_slide_file", "load_samples_at", "open_input",
           "say"]


def is_slide_file(path: Path) -> bool:
    """Whether ``path`` is read through its pyramid: a slide format, an OME-Zarr folder or a TIFF pyramid."""
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


def open_input(path: Path, request: dict | None = None, recorded: dict | None = None):
    """The image to process and its resolution; ``request``: ``{"mpp": …}`` or ``{"level": …}`` (or none).

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

    asked = dict(request or {})
    if not asked and not is_slide_file(path):
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


def geojson_mask_at(path, pixels, resolution):
    """A QuPath GeoJSON file (level-0 pixels) rasterised straight at the working resolution."""
    from ..io.geojson import Placement
    from ..io.geojson_labels import read_geojson_labels

    placement = Placement(resolution.downsample if resolution is not None else 1.0)
    result = read_geojson_labels(path, pixels.shape[:2], placement=placement)
    for message in result.messages:
        say(message)
    return result.instances


#: Largest working image (pixels in a plane) that training reads whole; bigger slides need --mpp/--level.
MAX_TRAIN_PIXELS = 100_000_000


def check_trainable(shape, resolution) -> None:
    """Refuse, in one line, a working image too big to be held in memory for training."""
    from ..io.working import describe

    height, width = (int(v) for v in shape[:2])
    if height * width > MAX_TRAIN_PIXELS:
        at = describe(resolution) if resolution is not None else "full resolution"
        raise ValueError(f"{height}×{width} pixels at {at} is too big to train on whole (over "
                         f"{MAX_TRAIN_PIXELS // 1_000_000} megapixels); choose a coarser --mpp or --level, "
                         "or train on regions exported from it")


def load_samples_at(images_dir, masks_dir, request: dict | None = None, *, channels=None, recorded: dict | None = None, classes=None):
    """Training samples with the images read at the working resolution ``request`` asks for
    (``{"mpp": …}``, ``{"level": …}`` or none, as :func:`open_input` takes it).

    Masks may be given at the images' full resolution (they are then picked
    by nearest pixel) or at the working resolution.  A working image over
    ``WHOLE_IMAGE_MAX`` pixels with QuPath GeoJSON annotations is read only
    where it is annotated (:mod:`napari_autosam.training.annotated_regions`).  Without a request (and no recorded resolution) this is
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
    from ..io.working import mask_at
    from ..training import load_samples
    from ..training.annotated_regions import WHOLE_IMAGE_MAX, region_samples
    from ..training.data import TrainingDataError, check_samples, samples_from_pair

    slide_only = tuple(s for s in SLIDE_SUFFIXES if s not in IMAGE_SUFFIXES)  # .svs, .ndpi, .mrxs, …
    pairs = pair_images_and_masks(images_dir, masks_dir, image_suffixes=IMAGE_SUFFIXES + slide_only)
    has_slides = any(Path(image).name.lower().endswith(slide_only)
                     or (is_geojson(mask) and is_slide_file(Path(image))) for image, mask in pairs)
    if not request and not recorded and not has_slides:
        return load_samples(images_dir, masks_dir, channels=channels, classes=classes), None
    samples, resolutions = [], []
    for image_path, mask_path in pairs:
        try:
            image, resolution, note = open_input(Path(image_path), request, recorded)
            say(note)
            if is_geojson(mask_path) and image.shape[0] * image.shape[1] > WHOLE_IMAGE_MAX:  # big: regions only
                regions = region_samples(image, resolution, mask_path, name=image_stem(image_path),
                                         source=f"{image_path} (annotations {mask_path})", channels=channels,
                                         classes=classes)
                samples += regions.samples
                resolutions += [resolution.to_dict()] if resolution is not None else []
                continue
            check_trainable(image.shape, resolution)
            pixels = np.asarray(image[...])
            mask = read_mask(mask_path) if not is_geojson(mask_path) else geojson_mask_at(mask_path, pixels, resolution)
        except (ImageReadError, ValueError) as exc:
            raise TrainingDataError(f"{image_path}: {exc}") from exc
        if resolution is not None:
            mask = mask_at(mask, pixels.shape[:2], resolution, Path(image_path).name)
            resolutions.append(resolution.to_dict())
        samples += samples_from_pair(pixels, mask, image_stem(image_path), source=f"{image_path} (mask {mask_path})",
                                     channels=channels, classes=classes)
    return check_samples(samples), (resolutions[0] if resolutions else None)
