"""Label images of big images on disk: OME-Zarr (NGFF 0.4) pyramids written tile by tile.

One label image is one folder, ``<stem>_<role>.ome.zarr`` (role: ``autosam``,
``h``, ``instances``), standing on its own beside the slide's other outputs::

    <stem>_autosam.ome.zarr/.zattrs      # multiscales (axes, scale + translation per level), image-label
    <stem>_autosam.ome.zarr/0/...        # the labels at the working resolution, 1024² chunks
    <stem>_autosam.ome.zarr/1/...        # half the size in Y and X, and so on down to ≤ 1024 px

Why standalone folders and not ``image.ome.zarr/labels/<name>``: most slides
are vendor files (SVS, NDPI, MRXS) that cannot hold a labels group, and an
input is never written into; a standalone folder carries the same
``image-label`` metadata, so napari-ome-zarr and other NGFF readers open it
as labels, and it can be moved or deleted on its own, like a TIFF output.

Writes are chunk by chunk.  zarr's local store writes every chunk to a
temporary ``*.partial`` file and renames it over the old one, so a crash
leaves each chunk either old or new, never torn.  New label images are built
in a hidden temporary folder and renamed into place when complete
(:func:`~napari_autosam.io.atomic.atomic_directory`).  A region update marks
the region as ``pending`` in the metadata first and clears it after the
pyramid is rebuilt; opening the image for writing rebuilds a pending
region's pyramid, so a crash there is repaired on the next write.

Lower levels are built block by block from the level above by the mode of
each 2×2 block (ties: the top-left pixel), which keeps label ids and thin
objects; no level is ever read whole.  No napari or Qt here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..progress import Stopwatch, Task, run

#: Results of planes with more pixels than this (at the working resolution) go to OME-Zarr
#: label images on disk and are shown lazily; smaller ones stay in memory.  GUI and CLI use it.
ON_DISK_ABOVE = 4096 * 4096
#: Chunk side of every level (Y and X); stacks are chunked one slice deep.
CHUNK = 1024
#: Levels are halved until the longer side is at most this (two levels at least).
SMALLEST_LEVEL = 1024
SUFFIX = ".ome.zarr"
META_KEY = "autosam"
_NGFF_VERSION = "0.4"


def _ome_writer():
    """ome-zarr's NGFF 0.4 format and metadata writers (its import warns about an unrelated deprecated class)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.format import FormatV04
        from ome_zarr.writer import add_metadata, write_multiscales_metadata
    return FormatV04, add_metadata, write_multiscales_metadata


def labels_on_disk(plane_shape: tuple[int, int]) -> bool:
    """Whether the labels of a ``H×W`` plane (at the working resolution) belong on disk."""
    return int(plane_shape[0]) * int(plane_shape[1]) > ON_DISK_ABOVE


def labels_path(folder: str | os.PathLike, stem: str, role: str) -> Path:
    """``folder/<stem>_<role>.ome.zarr``."""
    return Path(folder) / f"{stem}_{role}{SUFFIX}"


def pyramid_shapes(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shapes of the levels: Y and X halved (rounding up) until the longer side is ≤ SMALLEST_LEVEL.

    Always at least two levels: napari takes a one-element list for something else than a pyramid.
    """
    shapes = [tuple(int(s) for s in shape)]
    while len(shapes) < 2 or max(shapes[-1][-2:]) > SMALLEST_LEVEL:
        *lead, h, w = shapes[-1]
        shapes.append((*lead, math.ceil(h / 2), math.ceil(w / 2)))
    return shapes


@dataclass(frozen=True)
class Placement:
    """Where one label pixel of level 0 sits in the viewer's world (the slide's coordinates).

    Attributes
    ----------
    scale : ``(sy, sx)`` size of a pixel, µm when ``unit`` is "micrometer", else level-0 pixels
    translation : ``(ty, tx)`` position of the centre of pixel ``(0, 0)``
    unit : "micrometer" or None (pixels)
    """

    scale: tuple[float, float] = (1.0, 1.0)
    translation: tuple[float, float] = (0.0, 0.0)
    unit: str | None = None

    def level(self, k: int) -> tuple[list[float], list[float]]:
        """``(scale, translation)`` of pyramid level ``k`` (pixels ``2**k`` times larger, centres aligned)."""
        f = 2.0**k
        scale = [s * f for s in self.scale]
        translation = [t + (f - 1) / 2 * s for t, s in zip(self.translation, self.scale)]
        return scale, translation


def placement_for(resolution=None, base_scale=(1.0, 1.0), base_translate=(0.0, 0.0)) -> Placement:
    """The placement of labels at a working ``resolution`` (:class:`napari_autosam.io.working.Resolution`).

    Over a level-0 image whose pixels are ``base_scale`` apart (default:
    the slide's µm/px when the resolution has one, else level-0 pixels),
    through the one level-0 ↔ working mapping of :mod:`napari_autosam.io.working`.
    """
    if resolution is None:
        return Placement(tuple(base_scale), tuple(base_translate))
    from .working import layer_transform

    unit = None
    if resolution.mpp is not None and tuple(base_scale) == (1.0, 1.0):
        base_scale, unit = tuple(float(m) / resolution.downsample for m in resolution.mpp), "micrometer"
    transform = layer_transform(resolution, base_scale, base_translate)
    return Placement(tuple(transform["scale"]), tuple(transform["translate"]), unit)


def downsample_labels(block: np.ndarray) -> np.ndarray:
    """Halve the last two axes of a label block by the mode of each 2×2 block (ties: top-left).

    ``block`` is ``...×h×w`` of any integer dtype; odd sides are padded by
    repeating the last row/column.  Returns ``...×ceil(h/2)×ceil(w/2)``.
    """
    pad = [(0, 0)] * (block.ndim - 2) + [(0, block.shape[-2] % 2), (0, block.shape[-1] % 2)]
    if any(p[1] for p in pad):
        block = np.pad(block, pad, mode="edge")
    a, b = block[..., 0::2, 0::2], block[..., 0::2, 1::2]
    c, d = block[..., 1::2, 0::2], block[..., 1::2, 1::2]
    return np.where((a == b) | (a == c) | (a == d), a, np.where((b == c) | (b == d), b, np.where(c == d, c, a)))


def _chunk_windows(box: tuple[int, int, int, int], chunk: int):
    """Windows ``(y0, y1, x0, x1)`` covering ``box``, cut at multiples of ``chunk`` (so chunks are written whole)."""
    y0, y1, x0, x1 = box
    for ya in range(y0 - y0 % chunk, y1, chunk):
        for xa in range(x0 - x0 % chunk, x1, chunk):
            yield max(ya, y0), min(ya + chunk, y1), max(xa, x0), min(xa + chunk, x1)


class LabelImage:
    """An OME-Zarr label pyramid on disk (see the module docstring).

    Use :meth:`create` or :meth:`open`; ``levels`` are zarr arrays, level 0
    (the working resolution) first, ``Y×X`` or ``Z×Y×X``.
    """

    def __init__(self, path: Path, group) -> None:
        self.path = Path(path)
        self.group = group
        datasets = self._multiscales()["datasets"]
        self.levels = [group[d["path"]] for d in datasets]

    # ---------------------------------------------------------------- create / open

    @classmethod
    def create(cls, path: str | os.PathLike, shape: tuple[int, ...], dtype, placement: Placement | None = None, *,
               name: str = "labels", colors: dict[int, tuple[int, int, int, int]] | None = None,
               attributes: dict | None = None) -> LabelImage:
        """A new, all-zero label image at ``path`` (replacing what is there); no chunk is written yet.

        Parameters
        ----------
        shape : ``(H, W)`` or ``(Z, H, W)`` at the working resolution
        dtype : an integer dtype (uint8 masks, int32 instances)
        placement : scale/translation of level 0 in the slide's world (default: pixels at the origin)
        colors : label value → RGBA (0-255), stored as NGFF ``image-label`` colours
        attributes : JSON facts kept under ``autosam`` (slide path, resolution, role)
        """
        import zarr

        FormatV04, add_metadata, write_multiscales_metadata = _ome_writer()
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise ValueError(f"a label image needs a Y×X or Z×Y×X shape, got {shape}")
        if np.dtype(dtype).kind not in "iu":
            raise ValueError(f"labels need an integer dtype, got {np.dtype(dtype)}")
        placement = placement or Placement()
        group = zarr.open_group(str(path), mode="w", zarr_format=2)
        lead = len(shape) - 2
        datasets = []
        for k, level_shape in enumerate(pyramid_shapes(shape)):
            chunks = (1,) * lead + tuple(min(CHUNK, s) for s in level_shape[-2:])
            group.create_array(str(k), shape=level_shape, chunks=chunks, dtype=dtype, fill_value=0,
                               chunk_key_encoding={"name": "v2", "separator": "/"})
            scale, translation = placement.level(k)
            datasets.append({"path": str(k), "coordinateTransformations": [
                {"type": "scale", "scale": [1.0] * lead + scale},
                {"type": "translation", "translation": [0.0] * lead + translation}]})
        space = {"type": "space", **({"unit": placement.unit} if placement.unit else {})}
        axes = ([{"name": "z", "type": "space"}] if lead else []) + [{"name": a, **space} for a in "yx"]
        fmt = FormatV04()
        write_multiscales_metadata(group, datasets, fmt=fmt, axes=axes, name=name)
        label = {"version": _NGFF_VERSION}
        if colors:
            label["colors"] = [{"label-value": int(v), "rgba": [int(c) for c in rgba]} for v, rgba in colors.items()]
        add_metadata(group, {"image-label": label, META_KEY: dict(attributes or {})}, fmt=fmt)
        return cls(Path(path), group)

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r") -> LabelImage:
        """Open a label image; ``mode="r+"`` to write (and repair a region an interrupted update left).

        Raises
        ------
        ValueError
            ``path`` is missing or is not an OME-Zarr image with multiscales metadata.
        """
        import zarr

        path = Path(path)
        if not path.is_dir():
            raise ValueError(f"{path}: no such OME-Zarr folder")
        try:
            group = zarr.open_group(str(path), mode=mode)
        except Exception as exc:  # zarr raises several types for folders that are not zarr groups
            raise ValueError(f"{path}: not a zarr group ({type(exc).__name__}: {exc})") from exc
        if not isinstance(group.attrs.get("multiscales"), list) or not group.attrs["multiscales"]:
            raise ValueError(f"{path}: not an OME-Zarr image (no multiscales metadata)")
        image = cls(path, group)
        pending = image.attributes.get("pending")
        if mode != "r" and pending:
            image.build_pyramid(tuple(pending["box"]), z=pending.get("z"))
            image._set_pending(None)
        return image

    # ---------------------------------------------------------------- metadata

    def _multiscales(self) -> dict:
        return self.group.attrs["multiscales"][0]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.levels[0].shape)

    @property
    def dtype(self) -> np.dtype:
        return self.levels[0].dtype

    @property
    def attributes(self) -> dict:
        """The facts stored under ``autosam`` (slide, resolution, role, …)."""
        return dict(self.group.attrs.get(META_KEY, {}))

    def set_attributes(self, **facts) -> None:
        self.group.attrs[META_KEY] = {**self.attributes, **facts}

    def _set_pending(self, pending: dict | None) -> None:
        facts = self.attributes
        facts.pop("pending", None)
        if pending is not None:
            facts["pending"] = pending
        self.group.attrs[META_KEY] = facts

    @property
    def placement(self) -> Placement:
        """Scale and translation of level 0, read back from the multiscales metadata."""
        meta = self._multiscales()
        transforms = {t["type"]: t for t in meta["datasets"][0]["coordinateTransformations"]}
        scale = tuple(float(s) for s in transforms["scale"]["scale"][-2:])
        translation = tuple(float(t) for t in transforms.get("translation", {}).get("translation", [0, 0])[-2:])
        unit = meta.get("axes", [{}])[-1].get("unit")
        return Placement(scale, translation, unit)

    def layer_transform(self) -> dict:
        """``scale`` and ``translate`` (all axes) that overlay level 0 on the slide in a viewer."""
        lead = len(self.shape) - 2
        scale, translation = self.placement.level(0)
        return {"scale": [1.0] * lead + scale, "translate": [0.0] * lead + translation}

    # ---------------------------------------------------------------- read

    def multiscale(self) -> list:
        """The levels as lazy zarr arrays (largest first), e.g. for a multiscale Labels layer."""
        return list(self.levels)

    def read_region(self, box: tuple[int, int, int, int], z: int | None = None) -> np.ndarray:
        """``box = (y0, y1, x0, x1)`` of level 0 (plane ``z`` of a stack) as numpy."""
        y0, y1, x0, x1 = self._check_box(box)
        lead = () if z is None else (int(z),)
        return np.asarray(self.levels[0][(*lead, slice(y0, y1), slice(x0, x1))])

    def _check_box(self, box) -> tuple[int, int, int, int]:
        y0, y1, x0, x1 = (int(v) for v in box)
        height, width = self.shape[-2:]
        if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
            raise ValueError(f"region (y {y0}:{y1}, x {x0}:{x1}) is outside the {height}×{width} labels of {self.path.name}")
        return y0, y1, x0, x1

    # ---------------------------------------------------------------- write

    def write_array(self, source, *, offset: tuple[int, int] = (0, 0), z: int | None = None) -> Task[None]:
        """Copy ``source`` into level 0 at ``offset`` chunk by chunk, then rebuild the pyramid of that box.

        ``source`` is numpy or zarr, ``h×w`` (into plane ``z`` of a stack, or
        the plane) or ``Z×h×w`` (all planes); only its windows are read.  The
        box is marked ``pending`` until its pyramid is rebuilt.  A generator
        of ``write`` progress.
        """
        oy, ox = (int(v) for v in offset)
        h, w = source.shape[-2:]
        box = self._check_box((oy, oy + h, ox, ox + w))
        if source.ndim == len(self.shape):
            planes = [None] if source.ndim == 2 else list(range(source.shape[0]))
        elif source.ndim == 2 and z is not None:
            planes = [int(z)]
        else:
            raise ValueError(f"cannot write an array of shape {source.shape} into labels of shape {self.shape}")
        windows = list(_chunk_windows(box, CHUNK))
        clock = Stopwatch(len(planes) * len(windows))
        self._set_pending({"box": list(box), "z": planes[0] if len(planes) == 1 else None})
        for plane in planes:
            lead = () if plane is None else (plane,)
            index = () if plane is None or source.ndim == 2 else (plane,)
            for k, (y0, y1, x0, x1) in enumerate(windows):
                values = np.asarray(source[(*index, slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))])
                self.levels[0][(*lead, slice(y0, y1), slice(x0, x1))] = values.astype(self.dtype, copy=False)
                yield clock.event("write", k + 1 + planes.index(plane) * len(windows), "writing the labels")
            self.build_pyramid(box, z=plane)
        self._set_pending(None)

    def update_region(self, box: tuple[int, int, int, int], values, z: int | None = None) -> None:
        """Replace ``box = (y0, y1, x0, x1)`` of level 0 (plane ``z``) by ``values`` and rebuild its pyramid footprint.

        Only the chunks of the region, and of its footprint in each lower
        level, are rewritten.  Safe against a crash in between (see the module docstring).
        """
        y0, y1, x0, x1 = self._check_box(box)
        if tuple(values.shape[-2:]) != (y1 - y0, x1 - x0):
            raise ValueError(f"values of shape {tuple(values.shape)} do not fit the region {y1 - y0}×{x1 - x0}")
        run(self.write_array(values, offset=(y0, x0), z=z))

    def build_pyramid(self, box: tuple[int, int, int, int] | None = None, z: int | None = None, *,
                      start: int = 0, stop: int | None = None) -> None:
        """Recompute the lower levels where level 0's ``box`` (default: all of it) reaches, block by block.

        ``start``/``stop``: only levels ``start + 1 … stop`` (default: all), from level
        ``start``, whose pixels ``box`` then counts in (the tiles of a cluster run
        build their own levels, the rest follows from the smallest of those).
        """
        top = self.levels[start].shape
        y0, y1, x0, x1 = box if box is not None else (0, top[-2], 0, top[-1])
        planes = [z] if z is not None or len(self.shape) == 2 else list(range(self.shape[0]))
        for plane in planes:
            lead = () if plane is None else (int(plane),)
            by0, by1, bx0, bx1 = y0, y1, x0, x1
            for upper, lower in zip(self.levels[start:stop], self.levels[start + 1 : None if stop is None else stop + 1]):
                height, width = lower.shape[-2:]
                by0, by1, bx0, bx1 = by0 // 2, min(height, -(-by1 // 2)), bx0 // 2, min(width, -(-bx1 // 2))
                for a0, a1, b0, b1 in _chunk_windows((by0, by1, bx0, bx1), CHUNK):
                    block = np.asarray(upper[(*lead, slice(2 * a0, 2 * a1), slice(2 * b0, 2 * b1))])
                    lower[(*lead, slice(a0, a1), slice(b0, b1))] = downsample_labels(block)[: a1 - a0, : b1 - b0]
