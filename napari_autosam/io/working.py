"""The working resolution of a slide, and the ONE mapping between level-0 and working coordinates.

Segmentation and training see a slide at a *working resolution*: a pyramid
level as stored, or a target µm/px (or downsample) read from the nearest
finer level and resampled by area averaging, window by window, so no
full-resolution array is ever made.

Coordinates (used everywhere: labels on disk, edit regions, GeoJSON):

* pixel ``i`` of an image covers ``[i, i + 1)`` along its axis (corner
  convention, as QuPath and OpenSlide use);
* a working pixel at ``w`` covers level-0 pixels ``[w·d, (w + 1)·d)`` with
  ``d = Resolution.downsample``; so ``level0 = working · d`` and
  ``working = level0 / d`` (:func:`to_level0`, :func:`to_working`);
* a napari layer holding working-resolution data overlays the level-0
  image layer with ``scale = d · s0`` and ``translate = t0 + (d − 1)/2 · s0``
  (``s0``, ``t0``: the image layer's scale and translate; napari places
  pixel centres at integer data coordinates): :func:`layer_transform`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pyramid import ResolutionError
from .resample import Resampled

__all__ = [
    "Resampled",
    "Resolution",
    "ResolutionError",
    "box_edges",
    "box_transform",
    "cell_transform",
    "describe",
    "layer_transform",
    "level_for_mpp",
    "region_to_level0",
    "region_to_working",
    "resolution_note",
    "level_choices",
    "mask_at",
    "preferred_request",
    "same_resolution",
    "to_level0",
    "to_working",
    "working_image",
]

#: A pyramid level within this fraction of the requested downsample is used as stored.
TOLERANCE = 0.02


@dataclass(frozen=True)
class Resolution:
    """Where a working image comes from.

    Attributes
    ----------
    level : the pyramid level read (0 is the full resolution)
    downsample : level-0 pixels per working pixel, along each axis (1.0 at level 0)
    mpp : ``(y, x)`` µm per working pixel, or None for an uncalibrated slide
    factor : the resampling applied to ``level`` (1.0: the level as stored)
    """

    level: int
    downsample: float
    mpp: tuple[float, float] | None = None
    factor: float = 1.0

    @property
    def resampled(self) -> bool:
        return abs(self.factor - 1.0) > 1e-9

    def to_dict(self) -> dict:
        """Plain description for metadata: ``{"mpp": …}`` when calibrated, always ``level`` and ``downsample``."""
        out: dict = {"level": int(self.level), "downsample": round(float(self.downsample), 6)}
        if self.mpp is not None:
            out["mpp"] = round(float(np.mean(self.mpp)), 6)
        return out


def describe(resolution: Resolution | dict | None) -> str:
    """Human words for a resolution, e.g. ``"0.50 µm/px (level 1)"`` or ``"level 2 (16× downsample, uncalibrated)"``."""
    if resolution is None:
        return "full resolution"
    info = resolution.to_dict() if isinstance(resolution, Resolution) else dict(resolution)
    if not isinstance(resolution, Resolution) and info.get("mpp") is not None:
        return f"{info['mpp']:.3g} µm/px"  # a recorded resolution: its level was the training images' own
    where = f"level {info['level']}" if "level" in info else ""
    if isinstance(resolution, Resolution) and resolution.resampled:
        where += f" resampled {resolution.factor:.3g}×"
    if info.get("mpp") is not None:
        return f"{info['mpp']:.3g} µm/px" + (f" ({where})" if where else "")
    return f"{where} ({info.get('downsample', 1.0):.3g}× downsample, uncalibrated)".strip()


def level_for_mpp(slide, mpp: float) -> tuple[int, float]:
    """The pyramid level to read for ``mpp`` and the resampling factor still to apply (≥ 1)."""
    return _level_for_downsample(slide, _downsample_for_mpp(slide, mpp))


def _downsample_for_mpp(slide, mpp: float) -> float:
    if slide.mpp is None:
        raise ResolutionError(f"{slide.path.name} has no µm/px (uncalibrated): choose a pyramid level "
                              "(--level N) instead of --mpp")
    if not np.isfinite(mpp) or mpp <= 0:
        raise ResolutionError(f"--mpp must be a positive number of µm per pixel, got {mpp}")
    base = float(np.mean(slide.mpp))
    if mpp < base * (1 - TOLERANCE):
        raise ResolutionError(f"{mpp:g} µm/px is finer than level 0 of {slide.path.name} ({base:.4g} µm/px); "
                              f"choose {base:.4g} or coarser")
    return mpp / base


def _level_for_downsample(slide, downsample: float) -> tuple[int, float]:
    if not np.isfinite(downsample) or downsample < 1 - TOLERANCE:
        raise ResolutionError(f"downsample {downsample:g} is finer than level 0 of {slide.path.name}")
    candidates = [i for i, d in enumerate(slide.downsamples) if d <= downsample * (1 + TOLERANCE)]
    level = max(candidates, key=lambda i: slide.downsamples[i])
    factor = downsample / slide.downsamples[level]
    return level, 1.0 if abs(factor - 1) <= TOLERANCE else max(1.0, factor)


def working_image(slide, *, mpp: float | None = None, level: int | None = None, downsample: float | None = None):
    """The slide at a working resolution, lazily.

    Parameters
    ----------
    slide : an opened :class:`~napari_autosam.io.slides.Slide`
    mpp : target µm per pixel; the nearest finer level is read and resampled (area average)
    level : a pyramid level as stored
    downsample : target level-0 pixels per working pixel (for uncalibrated slides)

    At most one of them; none gives level 0.

    Returns
    -------
    (array, Resolution)
        ``array``: the level itself, or a :class:`Resampled` view (``Y×X[×C]``, the level's
        dtype) that reads only the source window each slice needs.

    Raises
    ------
    ResolutionError
        Two choices at once, a level out of range, ``mpp`` on an uncalibrated
        slide, or a resolution finer than level 0.
    """
    given = [name for name, value in (("mpp", mpp), ("level", level), ("downsample", downsample)) if value is not None]
    if len(given) > 1:
        raise ResolutionError(f"choose one of --mpp and --level, not {' and '.join('--' + g for g in given)}")
    if level is not None:
        n = len(slide.levels)
        if not isinstance(level, (int, np.integer)) or not 0 <= level < n:
            raise ResolutionError(f"level {level} is out of range: {slide.path.name} has levels 0..{n - 1}")
        level, factor = int(level), 1.0
    elif mpp is not None:
        level, factor = level_for_mpp(slide, float(mpp))
    elif downsample is not None:
        level, factor = _level_for_downsample(slide, float(downsample))
    else:
        level, factor = 0, 1.0
    total = slide.downsamples[level] * factor
    mpp_out = None if slide.mpp is None else (slide.mpp[0] * total, slide.mpp[1] * total)
    resolution = Resolution(level, float(total), mpp_out, float(factor))
    source = slide.levels[level]
    return (source if factor == 1.0 else Resampled(source, factor)), resolution


def request_of(resolution: dict | None, slide) -> dict:
    """``working_image`` keywords reproducing a recorded resolution (``Resolution.to_dict``) on ``slide``."""
    if not resolution:
        return {}
    if resolution.get("mpp") is not None and slide.mpp is not None:
        return {"mpp": float(resolution["mpp"])}
    if resolution.get("downsample") is not None:
        return {"downsample": float(resolution["downsample"])}
    if resolution.get("level") is not None:
        return {"level": int(resolution["level"])}
    return {}


def same_resolution(a: Resolution | dict | None, b: Resolution | dict | None) -> bool:
    """True when two resolutions agree within :data:`TOLERANCE` (µm/px when both have it, else downsample)."""
    a = a.to_dict() if isinstance(a, Resolution) else (a or {"downsample": 1.0})
    b = b.to_dict() if isinstance(b, Resolution) else (b or {"downsample": 1.0})
    key = "mpp" if a.get("mpp") is not None and b.get("mpp") is not None else "downsample"
    x, y = float(a.get(key) or 1.0), float(b.get(key) or 1.0)
    return abs(x - y) <= TOLERANCE * max(x, y)


def resolution_note(resolution: Resolution | None, recorded: dict | None) -> str | None:
    """One sentence when ``resolution`` differs from the model's ``recorded`` one, else None."""
    if not recorded or same_resolution(resolution, recorded):
        return None
    return f"working at {describe(resolution)}; the model was trained at {describe(recorded)}"


def level_choices(slide) -> list[tuple[str, dict]]:
    """``(label, working_image keywords)`` for each pyramid level, e.g. ``("Level 1 — 1 µm/px (4×)", {"level": 1})``."""
    choices = []
    for index, d in enumerate(slide.downsamples):
        mpp = slide.level_mpp(index)
        size = "×".join(str(int(s)) for s in slide.levels[index].shape[:2])
        what = f"{float(np.mean(mpp)):.3g} µm/px" if mpp else "uncalibrated"
        choices.append((f"Level {index} — {what}, {d:.3g}× ({size})", {"level": index}))
    return choices


# --------------------------------------------------------------------------- coordinates


def mask_at(mask, image_shape: tuple[int, int], resolution, name: str):
    """The mask at the working resolution: as given when it matches, else picked from level 0 by nearest pixel."""
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


def to_working(coords, resolution: Resolution) -> np.ndarray:
    """Level-0 coordinates (any shape, e.g. ``N×2`` as y, x) in working pixels: ``coords / d``."""
    return np.asarray(coords, dtype=float) / resolution.downsample


def to_level0(coords, resolution: Resolution) -> np.ndarray:
    """Working coordinates in level-0 pixels: ``coords · d``."""
    return np.asarray(coords, dtype=float) * resolution.downsample


def region_to_working(region, resolution: Resolution, shape=None) -> tuple[int, int, int, int]:
    """A level-0 box ``(y0, y1, x0, x1)`` as the working box covering it (rounded outwards, clipped to ``shape``)."""
    y0, y1, x0, x1 = to_working(region, resolution)
    box = [int(np.floor(y0 + 1e-9)), int(np.ceil(y1 - 1e-9)), int(np.floor(x0 + 1e-9)), int(np.ceil(x1 - 1e-9))]
    if shape is not None:
        box = [min(max(v, 0), shape[0 if i < 2 else 1]) for i, v in enumerate(box)]
    return tuple(box)


def region_to_level0(region, resolution: Resolution) -> tuple[int, int, int, int]:
    """A working box ``(y0, y1, x0, x1)`` in level-0 pixels (rounded outwards)."""
    y0, y1, x0, x1 = to_level0(region, resolution)
    return int(np.floor(y0 + 1e-9)), int(np.ceil(y1 - 1e-9)), int(np.floor(x0 + 1e-9)), int(np.ceil(x1 - 1e-9))


def layer_transform(resolution: Resolution, base_scale=(1.0, 1.0), base_translate=(0.0, 0.0)) -> dict:
    """napari ``scale`` and ``translate`` (y, x) that put working-resolution data over the level-0 image layer."""
    d = resolution.downsample
    scale = [float(s) * d for s in base_scale]
    translate = [float(t) + (d - 1) / 2 * float(s) for s, t in zip(base_scale, base_translate)]
    return {"scale": scale, "translate": translate}


def box_edges(box, scale, translate) -> np.ndarray:
    """World coordinates ``[[y0, x0], [y1, x1]]`` of the outer pixel edges of ``box = (y0, y1, x0, x1)``.

    ``scale``/``translate`` (y, x last) map the box's pixels to the world, as
    napari's layer transform does: pixel centres at integers, so the edges are
    half a pixel out.
    """
    y0, y1, x0, x1 = box
    scale = np.asarray(scale, dtype=float)[-2:]
    translate = np.asarray(translate, dtype=float)[-2:]
    return np.array([[y0 - 0.5, x0 - 0.5], [y1 - 0.5, x1 - 0.5]]) * scale + translate


def box_transform(box, scale, translate) -> dict:
    """``scale``/``translate`` (y, x) of the pixels of ``box = (y0, y1, x0, x1)`` cut out of an image placed by
    ``scale``/``translate``: the window lands where it was."""
    y0, _y1, x0, _x1 = box
    sy, sx = (float(v) for v in scale[-2:])
    ty, tx = (float(v) for v in translate[-2:])
    return {"scale": (sy, sx), "translate": (ty + y0 * sy, tx + x0 * sx)}


def cell_transform(scale, translate, cell: int) -> dict:
    """``scale``/``translate`` of a coarse grid whose cells cover ``cell × cell`` pixels of an image placed by
    ``scale``/``translate`` (the last two axes; others unchanged)."""
    scale, translate = [float(v) for v in scale], [float(v) for v in translate]
    for i in (-2, -1):
        translate[i] += (cell - 1) / 2 * scale[i]
        scale[i] *= cell
    return {"scale": scale, "translate": translate}


def preferred_request(slide, recorded: dict | None) -> dict:
    """The resolution to preselect on ``slide`` for a model trained at ``recorded`` (``{}``: keep the choice).

    A pyramid level stored at the model's µm/px (or downsample) is preferred
    as ``{"level": i}``; else its µm/px as ``{"mpp": x}`` (a model recorded by
    downsample with no level matching: level 0).
    """
    request = request_of(recorded, slide) if recorded else {}
    if "mpp" in request:
        match = [i for i in range(len(slide.downsamples))
                 if same_resolution({"mpp": float(np.mean(slide.level_mpp(i)))}, request)]
        return {"level": match[0]} if match else request
    if "downsample" in request:
        match = [i for i, d in enumerate(slide.downsamples) if same_resolution({"downsample": d}, request)]
        return {"level": match[0] if match else 0}
    return {}
