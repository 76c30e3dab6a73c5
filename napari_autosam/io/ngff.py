"""OME-Zarr (NGFF 0.4 and 0.5) image folders as :class:`~napari_autosam.io.slides.Slide` objects.

The ``multiscales`` metadata names the levels (``datasets``, largest
first), the axes and their units; the first dataset's ``scale`` (times any
scale of the whole multiscale) gives µm/px.  Singleton ``t`` and ``z``
axes are dropped; three or four ``uint8`` channels become a ``Y×X×3|4``
RGB image (read through dask, so slicing still reads only the chunks
touched); other channel counts stay ``C×Y×X``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .pyramid import MICRONS, Slide, SlideReadError

__all__ = ["missing_chunks", "missing_level0_chunks", "multiscales_of", "open_ngff"]


def multiscales_of(attrs: dict) -> list | None:
    """The ``multiscales`` list of a group's attributes (0.5 keeps it under ``"ome"``), or None."""
    found = attrs.get("ome", {}).get("multiscales") if isinstance(attrs.get("ome"), dict) else None
    return found if found is not None else attrs.get("multiscales")


def _scale(transforms: list | None, ndim: int) -> np.ndarray:
    scale = np.ones(ndim)
    for transform in transforms or []:
        if transform.get("type") == "scale" and len(transform.get("scale", [])) == ndim:
            scale = scale * np.asarray(transform["scale"], dtype=float)
    return scale


def open_ngff(path: Path) -> Slide:
    """Open an OME-Zarr image folder lazily.

    Raises
    ------
    SlideReadError
        Not a zarr group, no ``multiscales`` metadata, missing datasets or
        an image without ``y`` and ``x`` axes.
    """
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as error:
        raise SlideReadError(path, f"not a readable zarr group ({type(error).__name__}: {error})") from error
    multiscales = multiscales_of(dict(group.attrs))
    if not multiscales:
        raise SlideReadError(path, "no OME-Zarr 'multiscales' metadata (expected an NGFF image folder, "
                             "not a plain zarr array or group)")
    meta = multiscales[0]
    datasets = meta.get("datasets") or []
    axes = [a["name"] if isinstance(a, dict) else str(a) for a in meta.get("axes", [])]
    try:
        arrays = [group[d["path"]] for d in datasets]
    except Exception as error:
        raise SlideReadError(path, f"a dataset named in 'multiscales' is missing ({error})") from error
    if not arrays:
        raise SlideReadError(path, "'multiscales' lists no datasets")
    ndim = arrays[0].ndim
    axes = axes if len(axes) == ndim else ["t", "c", "z", "y", "x"][-ndim:]
    if "y" not in axes or "x" not in axes:
        raise SlideReadError(path, f"axes {axes} have no 'y' and 'x'")
    y, x = axes.index("y"), axes.index("x")
    outer = _scale(meta.get("coordinateTransformations"), ndim)
    scales = [_scale(d.get("coordinateTransformations"), ndim) * outer for d in datasets]
    levels = [_view(array, axes) for array in arrays]
    downsamples = [float(np.mean([s[y] / scales[0][y], s[x] / scales[0][x]])) for s in scales]
    return Slide(path, levels, downsamples, _mpp(meta, axes, scales[0], y, x), None, "ome-zarr", "zarr")


def _mpp(meta: dict, axes: list[str], scale: np.ndarray, y: int, x: int) -> tuple[float, float] | None:
    """µm/px of level 0; None when the axes carry no length unit."""
    units = {a.get("name"): a.get("unit") for a in meta.get("axes", []) if isinstance(a, dict)}
    factors = [MICRONS.get(str(units.get(axes[i])).lower()) for i in (y, x)]
    if any(f is None for f in factors):
        return None
    return float(scale[y] * factors[0]), float(scale[x] * factors[1])


def _view(array, axes: list[str]):
    """The zarr array with singleton t/z dropped and 3-4 uint8 channels moved last."""
    drop = [i for i, a in enumerate(axes) if a in ("t", "z") and array.shape[i] == 1]
    kept = [a for i, a in enumerate(axes) if i not in drop]
    rgb = "c" in kept and array.shape[axes.index("c")] in (3, 4) and np.dtype(array.dtype) == np.uint8
    if not drop and not rgb:
        return array
    import dask.array as da

    view = da.from_zarr(array)[tuple(0 if i in drop else slice(None) for i in range(array.ndim))]
    if rgb:
        order = [i for i, a in enumerate(kept) if a != "c"] + [kept.index("c")]
        view = view.transpose(order)
    return view


def missing_chunks(array) -> str | None:
    """One line when chunks of a zarr ``array`` have no data on disk, else None.

    zarr reads such a chunk as its fill value without a word, so a level-0
    chunk file that went missing (a copy cut short, a sync that skipped
    files) would be segmented as blank.  Writers may also leave out chunks
    that hold nothing but the fill value, so this is a warning, not an error.
    """
    try:
        total, stored = int(array.nchunks), int(array.nchunks_initialized)
    except Exception:  # a store that cannot list its keys: nothing to say
        return None
    if stored >= total:
        return None
    return (f"{total - stored} of {total} chunks of its full-resolution level have no data on disk and read as "
            f"{array.fill_value!r} (files missing, or left out because they held only that value)")


def missing_level0_chunks(path: str | Path) -> str | None:
    """:func:`missing_chunks` of the full-resolution level of the OME-Zarr image at ``path`` (None if whole)."""
    import zarr

    try:
        group = zarr.open_group(str(path), mode="r")
        array = group[multiscales_of(dict(group.attrs))[0]["datasets"][0]["path"]]
    except Exception:  # not an OME-Zarr image: open_ngff says why
        return None
    return missing_chunks(array)
