"""QuPath GeoJSON outputs of a segmentation: the objects of a label image or mask, in level-0 pixels.

``segment --geojson`` writes ``<stem>_instances.geojson`` (each instance a
detection) or ``<stem>_autosam.geojson`` (each region of the mask an
annotation); ``export-geojson`` writes any label image the same way.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["export_labels", "tile_source", "write_labels_geojson", "write_result_geojson"]


def _binary_values(labels) -> set[int] | None:
    """The values of a 0/1 or 0/255 mask, read block by block; None as soon as another value turns up."""
    import numpy as np

    from ..inference.tiling import blocks

    values: set[int] = set()
    for window in blocks(tuple(labels.shape)):
        values.update(int(v) for v in np.unique(np.asarray(labels[window])))
        if not values <= {0, 1, 255}:
            return None
    return values


def _block_max(labels) -> int:
    import numpy as np

    from ..inference.tiling import blocks

    return max((int(np.max(np.asarray(labels[window]))) for window in blocks(tuple(labels.shape))), default=0)


class _NonZero:
    """A 0/255 mask seen as 0/1, band by band (the outline tracer reads slices; nothing is held whole)."""

    def __init__(self, labels) -> None:
        self.labels, self.shape = labels, tuple(labels.shape)

    def __getitem__(self, key):
        import numpy as np

        return (np.asarray(self.labels[key]) > 0).astype(np.uint8)


def export_labels(labels, out: Path, *, kind: str = "auto", objects: str | None = None, classes=None,
                  placement=None, mpp: float | None = None, describe=None) -> int:
    """Write ``labels`` (``H×W``, numpy or lazy) as GeoJSON; return the number of features.

    ``describe``: optional ``f(level-0 geometry) → dict`` of more properties for each feature.
    """
    from ..io.geojson import labels_to_features, mask_to_features, write_geojson

    values = _binary_values(labels) if kind in ("auto", "semantic") else None
    if kind == "semantic" or (kind == "auto" and values is not None):
        mask = _NonZero(labels) if values and 255 in values else labels
        features = mask_to_features(mask, class_names=classes, object_type=objects or "annotation",
                                    placement=placement, mpp=mpp, describe=describe)
    else:
        names = {}
        if classes:
            if len(classes) != 1:
                raise ValueError("instance labels take one class name for all objects (--classes Nucleus)")
            names = dict.fromkeys(range(1, _block_max(labels) + 1), classes[0])
        features = labels_to_features(labels, object_type=objects or "detection", classes=names,
                                      placement=placement, mpp=mpp, describe=describe)
    write_geojson(out, features)
    return len(features)


def write_result_geojson(result, out: Path, stem: str, placement=None, resolution=None) -> Path:
    """``<stem>_instances.geojson`` (detections) from a segmentation's instances, else the regions of its mask.

    The mask is AutoSAM's, or h's for a preview (which has no AutoSAM mask).  Coordinates are level-0
    pixels: ``placement``, or the ``resolution`` (``io.working.Resolution``) the slide was read at.
    """
    if result.instances is not None:
        path, labels, kind = out / f"{stem}_instances.geojson", result.instances, "instances"
    else:
        name, labels = ("autosam", result.autosam_mask) if result.autosam_mask is not None else ("h", result.h_mask)
        path, kind = out / f"{stem}_{name}.geojson", "semantic"
    if labels.ndim != 2:
        raise ValueError("GeoJSON holds one plane: --geojson needs a 2D image, not a stack")
    if placement is None and resolution is not None:  # a slide segmented at a working resolution
        from ..io.geojson import Placement

        placement = Placement(resolution.downsample)
    export_labels(labels, path, kind=kind, placement=placement)
    return path


def write_labels_geojson(paths: dict, out: Path, stem: str, resolution=None, describe=None) -> Path:
    """GeoJSON of on-disk OME-Zarr results (``role → folder``): instances if there, else the AutoSAM (or h) mask.

    ``describe`` as for :func:`export_labels`.
    """
    from ..io.geojson import Placement
    from ..io.labels_zarr import LabelImage

    role = next(r for r in ("instances", "autosam", "h") if r in paths)
    labels = LabelImage.open(paths[role]).multiscale()[0]  # level 0, read band by band
    if len(labels.shape) != 2:
        raise ValueError("GeoJSON holds one plane: --geojson needs a 2D image, not a stack")
    path = out / f"{stem}_{role}.geojson"
    placement = Placement(resolution.downsample if resolution is not None else 1.0)
    export_labels(labels, path, kind="instances" if role == "instances" else "semantic", placement=placement,
                  describe=describe)
    return path


def tile_source(source_at, downsample: float = 1.0):
    """A ``describe`` for :func:`export_labels`: each object's ``autosam_source``, ``"sam"`` or ``"h"``.

    ``source_at(y, x)`` says what made the labels at a working-resolution pixel (a two-speed run's
    :meth:`~napari_autosam.inference.two_speed.TwoSpeedResult.source_at`); an object is judged at its
    representative point (inside it, in level-0 pixels divided by ``downsample``).
    """
    def describe(geometry) -> dict:
        point = geometry.representative_point()
        return {"autosam_source": source_at(point.y / downsample, point.x / downsample)}

    return describe
