"""Synthetic nuclei images with exact instance labels.

The images imitate two common kinds of microscopy of cell nuclei:

* ``stain="fluorescence"``: a DNA stain (DAPI/Hoechst) seen by a camera --
  bright nuclei on a dark, unevenly lit background, returned as ``uint16``
  camera counts (an offset of about 100 plus signal, Poisson and read noise).
* ``stain="he"``: a hematoxylin & eosin section seen in bright field --
  purple nuclei on pink, fibrous stroma, rendered with Beer-Lambert
  absorbance of two stain colours and returned as ``uint8`` RGB.

Each nucleus is an ellipse with a random size, eccentricity and rotation whose
boundary wobbles with a few low harmonics.  A fraction of the nuclei is placed
in deliberately touching or overlapping pairs; where two nuclei overlap, each
pixel belongs to the nucleus whose (normalised) centre is nearer, so touching
nuclei keep distinct labels with a natural dividing line.  Everything is
deterministic for a given ``seed``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from .nuclei_shapes import (
    _clean_labels,
    _default_count,
    _illumination,
    _Nucleus,
    _place_nuclei,
    _render_plane,
    _smooth_field,
    _smoothstep,
    _texture,
)

__all__ = ["make_depth_stack", "make_nuclei_dataset", "make_nuclei_image", "make_nuclei_stack", "make_review_slide", "write_dataset"]

STAINS = ("fluorescence", "he")

# Optical densities per unit stain for (R, G, B); hematoxylin absorbs red and
# green (purple-blue), eosin mostly green (pink).
_HEMATOXYLIN_OD = np.array([0.60, 0.72, 0.30])
_EOSIN_OD = np.array([0.08, 0.70, 0.36])


def _fluorescence(stain, texture_weight, nucleoli, texture, illumination, rng, noise: float) -> np.ndarray:
    """DNA-stain camera image (uint16): Poisson photons, gain, offset and read noise."""
    signal = stain * np.clip(1.0 + 0.3 * texture_weight * texture, 0.2, None) * (1.0 - 0.45 * np.clip(nucleoli, 0, 1))
    blur = (0.6,) * (signal.ndim - 2) + (1.0, 1.0)
    signal = ndi.gaussian_filter(signal, blur)
    haze = 0.12 * ndi.gaussian_filter(signal, 8.0)
    electrons = illumination * (0.08 + signal + haze) * 600.0
    if noise > 0:
        electrons = rng.poisson(electrons / noise**2) * noise**2
        electrons = electrons + rng.normal(0.0, 2.0 * noise, electrons.shape)
    counts = 100.0 + 4.0 * electrons
    return np.clip(np.round(counts), 0, 65535).astype(np.uint16)


def _fibres(rng, shape, n_directions: int = 4) -> np.ndarray:
    """Unit-variance fibre texture whose direction drifts slowly across the image.

    White noise is smoothed along a few directions with anisotropic Gaussians
    in the Fourier domain (cheap at any size), and the results are blended
    with slowly varying weights so one direction dominates locally.
    """
    spectrum = np.fft.rfft2(rng.standard_normal(shape))
    ky = np.fft.fftfreq(shape[0])[:, None] * 2 * np.pi
    kx = np.fft.rfftfreq(shape[1])[None, :] * 2 * np.pi
    along, across = 5.0, 1.0  # Gaussian sigmas in pixels
    blend = np.zeros(shape)
    total = np.zeros(shape)
    for theta in np.pi * (np.arange(n_directions) + rng.uniform()) / n_directions:
        k_along = kx * np.cos(theta) + ky * np.sin(theta)
        k_across = -kx * np.sin(theta) + ky * np.cos(theta)
        gain = np.exp(-0.5 * ((k_along * along) ** 2 + (k_across * across) ** 2))
        fibres = np.fft.irfft2(spectrum * gain, s=shape)
        weight = _smooth_field(rng, shape, 64) ** 4 + 1e-6
        blend += weight * fibres / fibres.std()
        total += weight
    return blend / total


def _stroma(rng, shape) -> np.ndarray:
    """Eosin optical density of the tissue around the nuclei: wavy fibres and a few pale gaps."""
    density = 0.24 + 0.055 * _fibres(rng, shape) + 0.10 * (_smooth_field(rng, shape, 24) - 0.5)
    gaps = _smoothstep((_smooth_field(rng, shape, 40) - 0.75) / 0.12)
    return np.clip(density * (1.0 - 0.85 * gaps), 0.01, None)


def _bright_field(stain, texture_weight, nucleoli, texture, illumination, rng, noise: float) -> np.ndarray:
    """H&E RGB image (uint8) from hematoxylin and eosin optical densities."""
    nuclear = stain * np.clip(1.0 + 0.35 * texture_weight * texture, 0.3, None) + 0.35 * np.clip(nucleoli, 0, 1)
    hematoxylin = 0.03 + 0.62 * nuclear
    cytoplasm = ndi.gaussian_filter(np.minimum(stain, 1.0), 4.0)
    eosin = _stroma(rng, stain.shape) + 0.10 * cytoplasm - 0.08 * np.minimum(stain, 1.0)
    hematoxylin = ndi.gaussian_filter(hematoxylin, 0.8)
    eosin = ndi.gaussian_filter(np.clip(eosin, 0.0, None), 0.8)
    density = hematoxylin[..., None] * _HEMATOXYLIN_OD + eosin[..., None] * _EOSIN_OD
    rgb = 248.0 * (0.9 + 0.1 * illumination)[..., None] * np.power(10.0, -density)
    if noise > 0:
        rgb = rgb + rng.normal(0.0, 2.5 * noise, rgb.shape)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def _to_output(image: np.ndarray, stain: str, rgb: bool) -> np.ndarray:
    """Convert the rendered image to the requested channel layout."""
    if stain == "he":
        if rgb:
            return image
        gray = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return np.clip(np.round(gray), 0, 255).astype(np.uint8)
    if not rgb:
        return image
    # A DAPI channel exported as an RGB snapshot: the signal in blue.
    low, high = np.percentile(image, (0.5, 99.9))
    blue = np.clip((image - low) / max(high - low, 1.0), 0, 1) * 255
    out = np.zeros(image.shape + (3,), np.uint8)
    out[..., 2] = np.round(blue).astype(np.uint8)
    out[..., 0] = out[..., 1] = (out[..., 2] // 8).astype(np.uint8)
    return out


def make_nuclei_image(
    shape: tuple[int, int] = (256, 256),
    *,
    n_nuclei: int | None = None,
    radius_range: tuple[float, float] = (6, 16),
    touching_fraction: float = 0.3,
    noise: float = 1.0,
    rgb: bool | None = None,
    stain: str = "fluorescence",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthesise one 2D image of nuclei and its instance labels.

    Parameters
    ----------
    shape : (Y, X)
        Image size in pixels.
    n_nuclei : int, optional
        Number of nuclei to try to place; by default enough to cover about
        22 % of the area.  Fewer are placed when they do not fit.
    radius_range : (min, max)
        Range of the mean nucleus radius in pixels.
    touching_fraction : float in [0, 1]
        Fraction of the nuclei that belong to a touching or overlapping pair.
    noise : float
        Noise level relative to the default (0 gives a noise-free image).
    rgb : bool, optional
        Return an RGB ``uint8`` image.  Defaults to True for ``"he"`` and
        False for ``"fluorescence"``.  H&E with ``rgb=False`` gives its
        ``uint8`` luminance; fluorescence with ``rgb=True`` puts the signal
        in the blue channel, like an exported DAPI snapshot.
    stain : "fluorescence" or "he"
        Imaging modality (see the module docstring).
    seed : int
        Random seed; the same seed gives the same output.

    Returns
    -------
    image : ndarray
        ``(Y, X)`` uint16 for fluorescence, ``(Y, X, 3)`` uint8 for RGB,
        ``(Y, X)`` uint8 for grayscale H&E.
    labels : ndarray
        ``(Y, X)`` int32 instance labels: 0 is background, nuclei are 1..N.
    """
    if stain not in STAINS:
        raise ValueError(f"stain must be one of {STAINS}, got {stain!r}")
    rgb = (stain == "he") if rgb is None else bool(rgb)
    shape = (int(shape[0]), int(shape[1]))
    rng = np.random.default_rng(seed)
    count = _default_count(shape, radius_range) if n_nuclei is None else int(n_nuclei)
    nuclei = _place_nuclei(rng, shape, count, radius_range, touching_fraction, stain)
    labels, stain_map, texture_weight, nucleoli = _render_plane(nuclei, shape)
    illumination = _illumination(rng, shape, 0.35 if stain == "fluorescence" else 0.6)
    render = _fluorescence if stain == "fluorescence" else _bright_field
    image = render(stain_map, texture_weight, nucleoli, _texture(rng, shape), illumination, rng, noise)
    return _to_output(image, stain, rgb), _clean_labels(labels)


def make_nuclei_dataset(
    n: int, shape: tuple[int, int] = (256, 256), *, seed: int = 0, **kwargs
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n`` independent ``(image, labels)`` pairs from :func:`make_nuclei_image`.

    Image ``i`` depends only on ``seed`` and ``i`` (not on ``n``), so a longer
    dataset extends a shorter one.  ``kwargs`` go to :func:`make_nuclei_image`.
    """
    return [make_nuclei_image(shape, seed=child, **kwargs) for child in _child_seeds(seed, n)]


def _child_seeds(seed: int, n: int) -> list[int]:
    """Independent per-image seeds; the first ``k`` do not depend on ``n``."""
    return [int(child.generate_state(1)[0]) for child in np.random.SeedSequence(seed).spawn(int(n))]


def make_nuclei_stack(
    depth: int = 8,
    shape: tuple[int, int] = (128, 128),
    *,
    n_nuclei: int | None = None,
    radius_range: tuple[float, float] = (6, 14),
    touching_fraction: float = 0.3,
    noise: float = 1.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthesise a fluorescence z-stack of ellipsoidal nuclei.

    Nuclei are ellipsoids whose half-height spans 2-5 slices, so a nucleus
    grows and shrinks smoothly from slice to slice and keeps one label through
    the stack.  Touching pairs sit at nearly the same depth.

    Returns
    -------
    stack : ndarray
        ``(Z, Y, X)`` uint16 camera counts.
    labels : ndarray
        ``(Z, Y, X)`` int32 instance labels, one id per nucleus over all slices.
    """
    shape = (int(shape[0]), int(shape[1]))
    rng = np.random.default_rng(seed)
    count = _default_count(shape, radius_range) if n_nuclei is None else int(n_nuclei)
    flat = _place_nuclei(rng, shape, count, radius_range, touching_fraction, "fluorescence")
    nuclei = _assign_depths(rng, flat, depth)
    planes = [_render_plane(nuclei, shape, z=float(z)) for z in range(depth)]
    labels, stain_map, texture_weight, nucleoli = (np.stack(maps) for maps in zip(*planes))
    texture = np.stack([_texture(rng, shape) for _ in range(depth)])
    texture = ndi.gaussian_filter(texture, (1.0, 0, 0))
    texture /= max(texture.std(), 1e-9)
    illumination = _illumination(rng, shape, 0.35)
    image = _fluorescence(stain_map, texture_weight, nucleoli, texture, illumination, rng, noise)
    return image, _clean_labels(labels)


def _assign_depths(rng, nuclei: list[_Nucleus], depth: int) -> list[_Nucleus]:
    """Give each nucleus a centre slice and half-height; touching partners share their anchor's depth."""
    out: list[_Nucleus] = []
    for nucleus in nuclei:
        z_center = rng.uniform(-0.5, depth - 0.5)
        for other in out:  # a partner overlaps in (y, x): put it at about the same depth
            gap = np.hypot(nucleus.center[0] - other.center[0], nucleus.center[1] - other.center[1])
            if gap < nucleus.reach + other.reach:
                z_center = other.z_center + rng.uniform(-0.5, 0.5)
        half_height = rng.uniform(2.0, 5.0)
        out.append(replace(nucleus, z_center=z_center, z_semi_axis=half_height))
    return out


def make_depth_stack(
    depth: int = 10,
    shape: tuple[int, int] = (64, 64),
    *,
    n_tubes: int = 2,
    n_beads: int = 3,
    radius_range: tuple[float, float] = (6.0, 9.0),
    bead_half_depth: float = 1.2,
    noise: float = 0.35,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A stack where one slice alone is ambiguous: tubes (foreground) and beads (not).

    Tubes are cylinders along depth through every slice; beads are flat
    ellipsoids (``bead_half_depth`` slices thick) with the same brightness
    and, at their middle slice, the same disc as a tube.  In that slice a
    bead and a tube look alike, so only the neighbouring slices tell them
    apart.  Independent Gaussian noise (``noise`` times the signal) in every
    slice also averages out only over depth.

    Returns
    -------
    stack : ``(Z, Y, X)`` float32, signal 1 on background 0, plus noise
    mask : ``(Z, Y, X)`` uint8, 1 inside the tubes only
    """
    rng = np.random.default_rng(seed)
    height, width = (int(s) for s in shape)
    yy, xx = np.mgrid[:height, :width]
    placed: list[tuple[float, float, float]] = []
    for _ in range(200 * (n_tubes + n_beads)):
        if len(placed) == n_tubes + n_beads:
            break
        r = rng.uniform(*radius_range)
        y, x = rng.uniform(r + 1, height - r - 1), rng.uniform(r + 1, width - r - 1)
        if all(np.hypot(y - py, x - px) > r + pr + 3 for py, px, pr in placed):
            placed.append((y, x, r))
    stack = np.zeros((depth, height, width), np.float32)
    mask = np.zeros((depth, height, width), np.uint8)
    for i, (y, x, r) in enumerate(placed):
        disc = np.clip(r + 0.5 - np.hypot(yy - y, xx - x), 0, 1).astype(np.float32)  # anti-aliased edge
        if i < n_tubes:
            stack += disc
            mask |= (np.hypot(yy - y, xx - x) <= r).astype(np.uint8)[None]
            continue
        middle = rng.uniform(1, depth - 2)
        for z in range(depth):
            left = 1.0 - ((z - middle) / bead_half_depth) ** 2  # ellipsoid: radius shrinks away from the middle
            if left > 0:
                stack[z] += np.clip(r * np.sqrt(left) + 0.5 - np.hypot(yy - y, xx - x), 0, 1)
    stack += rng.normal(0.0, noise, stack.shape).astype(np.float32)
    return stack, mask


def make_review_slide(tile: int = 64, odd: tuple[int, int] = (1, 2), seed: int = 200) -> tuple[np.ndarray, tuple]:
    """A 3×3 mosaic of fluorescent-nuclei tiles with one tile replaced by a washed-out stain.

    The odd tile's intensities hover around the middle of the mosaic's range,
    where a "nuclei are bright" model is least sure: the test case for ranking
    regions by uncertainty.  Returns the ``3·tile × 3·tile`` float32 plane and
    the odd tile's ``(y0, y1, x0, x1)``.
    """
    plane = np.zeros((3 * tile, 3 * tile), np.float32)
    for k in range(9):
        i, j = divmod(k, 3)
        plane[i * tile : (i + 1) * tile, j * tile : (j + 1) * tile] = make_nuclei_image((tile, tile), seed=seed + k)[0]
    low, high = np.percentile(plane, [0.5, 99.5])
    noise = np.random.default_rng(0).standard_normal((tile, tile))
    box = (odd[0] * tile, (odd[0] + 1) * tile, odd[1] * tile, (odd[1] + 1) * tile)
    plane[box[0] : box[1], box[2] : box[3]] = low + (high - low) * (0.5 + 0.04 * noise)
    return plane, box


def write_dataset(
    directory: str | os.PathLike,
    n: int,
    shape: tuple[int, int] = (256, 256),
    *,
    seed: int = 0,
    **kwargs,
) -> tuple[Path, Path]:
    """Write ``n`` synthetic images and masks as TIFF files.

    Files are ``directory/images/img_000.tif`` and ``directory/masks/img_000.tif``
    (same stems; more digits when ``n > 1000``).  Masks are stored as uint16
    when the labels fit, else int32.  ``kwargs`` go to :func:`make_nuclei_image`.

    Returns
    -------
    (images_dir, masks_dir)
    """
    from napari_autosam.io.images import write_tiff

    images_dir = Path(directory) / "images"
    masks_dir = Path(directory) / "masks"
    digits = max(3, len(str(max(int(n) - 1, 0))))
    for index, child in enumerate(_child_seeds(seed, n)):  # one image in memory at a time
        image, labels = make_nuclei_image(shape, seed=child, **kwargs)
        name = f"img_{index:0{digits}d}.tif"
        mask_dtype = np.uint16 if labels.max() < 2**16 else np.int32
        write_tiff(images_dir / name, image)
        write_tiff(masks_dir / name, labels.astype(mask_dtype))
    images_dir.mkdir(parents=True, exist_ok=True)
    masks_dir.mkdir(parents=True, exist_ok=True)
    return images_dir, masks_dir
