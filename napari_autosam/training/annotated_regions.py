"""Training samples from the annotated regions of a slide of any size (QuPath GeoJSON beside the slide).

A slide is far too big to read whole, and a pathologist annotates only a few
areas of it.  :func:`region_samples` reads just those areas at the working
resolution: the bounding box of every object (level-0 pixels, as QuPath
exports them) mapped to the working resolution, grown by a margin, boxes that
touch merged, long boxes cut into pieces of at most ``max_side``; each piece is
read lazily from the slide's pyramid (one slice of the working image) and the
objects are rasterised into it.  The margin counts as background, so keep it
small where objects were not all annotated.

Objects classified ``Region*`` (QuPath's class for areas of interest) or
``Region`` only say where to read: their inside is not foreground, but the
objects within them are, and everything else inside them is background.

No napari or Qt here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

#: Working images up to this many pixels (a plane) are trained on whole; larger ones on their annotated regions.
WHOLE_IMAGE_MAX = 4096 * 4096
#: Working-resolution pixels of context added around each annotated object's box.
MARGIN = 64
#: Pieces of a region are at most this many working pixels on a side.
MAX_SIDE = 2048
#: Class names (lower case, trailing ``*`` dropped) whose objects mark regions to read, not foreground.
REGION_CLASSES = ("region",)


@dataclass(frozen=True)
class AnnotatedRegions:
    """What :func:`region_samples` read: the samples, and each box ``(y0, y1, x0, x1)`` (working pixels)."""

    samples: list
    boxes: list[tuple[int, int, int, int]]
    messages: list[str]

    @property
    def pixels_read(self) -> int:
        return sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in self.boxes)


def _is_region(obj) -> bool:
    return bool(obj.class_name) and obj.class_name.rstrip("*").strip().lower() in REGION_CLASSES


def _merge(boxes: list[list[int]]) -> list[list[int]]:
    """Boxes ``[y0, y1, x0, x1]`` with every overlapping or touching pair joined (until none overlap)."""
    boxes = [list(b) for b in boxes]
    merged = True
    while merged:
        merged = False
        out: list[list[int]] = []
        for box in boxes:
            for other in out:
                if box[0] <= other[1] and other[0] <= box[1] and box[2] <= other[3] and other[2] <= box[3]:
                    other[:] = [min(box[0], other[0]), max(box[1], other[1]), min(box[2], other[2]),
                                max(box[3], other[3])]
                    merged = True
                    break
            else:
                out.append(box)
        boxes = out
    return sorted(boxes)


def _pieces(box, max_side: int) -> list[tuple[int, int, int, int]]:
    """A box cut into a grid of near-equal pieces at most ``max_side`` on a side."""
    y0, y1, x0, x1 = box
    ny, nx = -(-(y1 - y0) // max_side), -(-(x1 - x0) // max_side)
    ys = np.linspace(y0, y1, ny + 1).round().astype(int)
    xs = np.linspace(x0, x1, nx + 1).round().astype(int)
    return [(int(ys[i]), int(ys[i + 1]), int(xs[j]), int(xs[j + 1])) for i in range(ny) for j in range(nx)]


def annotated_boxes(objects, shape: tuple[int, int], downsample: float, *, margin: int = MARGIN,
                    max_side: int = MAX_SIDE) -> list[tuple[int, int, int, int]]:
    """The working-resolution boxes ``(y0, y1, x0, x1)`` to read for ``objects`` (level-0 geometries)."""
    height, width = (int(s) for s in shape)
    boxes = []
    for obj in objects:
        minx, miny, maxx, maxy = obj.geometry.bounds
        box = [int(np.floor(miny / downsample)) - margin, int(np.ceil(maxy / downsample)) + margin,
               int(np.floor(minx / downsample)) - margin, int(np.ceil(maxx / downsample)) + margin]
        box = [max(0, box[0]), min(height, box[1]), max(0, box[2]), min(width, box[3])]
        if box[1] > box[0] and box[3] > box[2]:
            boxes.append(box)
    return [piece for box in _merge(boxes) for piece in _pieces(box, max_side)]


def _labels_in(objects, box, downsample: float, classes):
    """The objects rasterised into one box (working pixels), as instances or (with ``classes``) class ids."""
    import shapely

    from ..io.geojson import Placement
    from ..io.geojson_labels import objects_to_labels

    y0, y1, x0, x1 = box
    frame = shapely.box(x0 * downsample, y0 * downsample, x1 * downsample, y1 * downsample)
    inside = [o for o in objects if not _is_region(o) and o.geometry.intersects(frame)]
    result = objects_to_labels(inside, (y1 - y0, x1 - x0), placement=Placement(downsample, (x0 * downsample,
                                                                                            y0 * downsample)),
                               class_names=classes.names if classes is not None else None)
    if classes is not None:
        return result.classes if result.classes is not None else np.zeros((y1 - y0, x1 - x0), np.uint8)
    return result.instances


def region_samples(image, resolution, geojson_path, *, name: str, source: str, margin: int = MARGIN,
                   max_side: int = MAX_SIDE, channels=None, classes=None) -> AnnotatedRegions:
    """Samples of the annotated regions of one slide.

    Parameters
    ----------
    image : the slide's lazy working image (``working_image``); only the boxes are read from it
    resolution : its :class:`~napari_autosam.io.working.Resolution` (None: level 0)
    geojson_path : QuPath's GeoJSON export of the slide (level-0 pixels)
    name, source : for the samples (``name:rNNN`` each) and messages
    margin, max_side : see :data:`MARGIN` and :data:`MAX_SIDE`
    channels, classes : as for :func:`~napari_autosam.training.data.samples_from_pair`

    Raises
    ------
    GeoJSONError
        An unreadable file, or one without any object with an area.
    """
    from ..io.geojson import GeoJSONError, read_features
    from .data import samples_from_pair

    objects, messages = read_features(geojson_path)
    downsample = float(resolution.downsample) if resolution is not None else 1.0
    boxes = annotated_boxes(objects, image.shape[:2], downsample, margin=margin, max_side=max_side)
    if not boxes:
        raise GeoJSONError(f"{geojson_path}: no annotated object lies on the slide, so there is nothing to read")
    samples = []
    for i, box in enumerate(boxes):
        y0, y1, x0, x1 = box
        pixels = np.asarray(image[y0:y1, x0:x1])
        mask = _labels_in(objects, box, downsample, classes)
        samples += samples_from_pair(pixels, mask, f"{name}:r{i:03d}", source=f"{source} region {box}",
                                     channels=channels, classes=classes)
    for message in messages:
        logging.getLogger("napari_autosam").warning("note: %s", message)
    return AnnotatedRegions(samples, boxes, messages)
