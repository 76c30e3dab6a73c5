"""The nuclei of the synthetic images: their shapes, their placement and the planes they are drawn into.

:mod:`.synthetic` renders these as fluorescence or H&E images; everything
is deterministic for a given random generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from scipy import ndimage as ndi

_COVERAGE = 0.22  # fraction of the image area covered by nuclei when n_nuclei is None
_HARMONICS = np.arange(2, 6)  # boundary wobble: 2..5 lobes


@dataclass(frozen=True)
class _Nucleus:
    """One nucleus: an ellipse (or ellipsoid) with a wobbly boundary; lengths in pixels."""

    center: tuple[float, float]  # (y, x)
    semi_axes: tuple[float, float]  # along the rotated x and y axes
    angle: float  # radians
    wobble: np.ndarray  # (len(_HARMONICS), 2): amplitude and phase per harmonic
    brightness: float  # relative stain amount, about 1
    texture: float  # strength of the chromatin texture
    nucleoli: np.ndarray  # (k, 3): offset y, offset x (in units of the short semi-axis), sigma in pixels
    z_center: float = 0.0  # stacks only: slice index of the centre
    z_semi_axis: float = np.inf  # stacks only: half-height in slices

    @cached_property
    def reach(self) -> float:
        """Radius of a circle that surely contains the nucleus."""
        return max(self.semi_axes) * (1.0 + self.wobble[:, 0].sum()) + 1.0

    def radius_map(self, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        """Normalised radius at offsets ``(dy, dx)`` from the centre: < 1 inside, 1 on the boundary."""
        cos, sin = np.cos(self.angle), np.sin(self.angle)
        u = (dx * cos + dy * sin) / self.semi_axes[0]
        v = (dy * cos - dx * sin) / self.semi_axes[1]
        phi = np.arctan2(v, u)[..., None]
        amplitude, phase = self.wobble[:, 0], self.wobble[:, 1]
        rho = 1.0 + (amplitude * np.cos(_HARMONICS * phi + phase)).sum(axis=-1)
        return np.hypot(u, v) / rho

    def boundary_distance(self, direction: np.ndarray) -> float:
        """Distance from the centre to the boundary along the unit vector ``direction`` (dy, dx)."""
        # The normalised radius is homogeneous of degree one along a ray.
        return 1.0 / float(self.radius_map(np.array(direction[0]), np.array(direction[1])))


def _random_nucleus(rng: np.random.Generator, center, radius_range, stain: str) -> _Nucleus:
    radius = rng.uniform(*radius_range)
    aspect = rng.uniform(1.0, 1.7)
    amplitudes = rng.uniform(0.0, 0.07, len(_HARMONICS)) / np.sqrt(_HARMONICS - 1)
    phases = rng.uniform(0.0, 2 * np.pi, len(_HARMONICS))
    n_spots = int(rng.integers(0, 3))
    spots = np.column_stack([rng.uniform(-0.4, 0.4, (n_spots, 2)), rng.uniform(0.8, 1.6, n_spots)])
    if stain == "he":
        brightness = rng.uniform(0.55, 1.0)
    else:
        brightness = float(np.exp(rng.normal(0.0, 0.3)))
    return _Nucleus(
        center=(float(center[0]), float(center[1])),
        semi_axes=(radius * np.sqrt(aspect), radius / np.sqrt(aspect)),
        angle=rng.uniform(0.0, np.pi),
        wobble=np.stack([amplitudes, phases], axis=1),
        brightness=brightness,
        texture=rng.uniform(0.5, 1.5),
        nucleoli=spots,
    )


def _fits(candidate: _Nucleus, centers: np.ndarray, reaches: np.ndarray, gap: float = 2.0) -> bool:
    """True if ``candidate`` keeps at least ``gap`` pixels from nuclei at ``centers`` (K×2) with ``reaches`` (K)."""
    distances = np.hypot(centers[:, 0] - candidate.center[0], centers[:, 1] - candidate.center[1])
    return bool(np.all(distances >= reaches + candidate.reach + gap))


def _touching_partner(rng, anchor: _Nucleus, radius_range, stain: str) -> _Nucleus:
    """A nucleus that overlaps ``anchor`` by 5-20 % of their combined extent along the centre line."""
    theta = rng.uniform(0.0, 2 * np.pi)
    direction = np.array([np.sin(theta), np.cos(theta)])
    partner = _random_nucleus(rng, anchor.center, radius_range, stain)
    distance = (anchor.boundary_distance(direction) + partner.boundary_distance(-direction)) * rng.uniform(0.8, 0.95)
    center = np.asarray(anchor.center) + distance * direction
    return replace(partner, center=(float(center[0]), float(center[1])))


def _place_nuclei(rng, shape, n_nuclei, radius_range, touching_fraction, stain) -> list[_Nucleus]:
    """Touching pairs first (while there is room for them), then isolated nuclei, by rejection sampling."""
    n_pairs = int(round(n_nuclei * float(np.clip(touching_fraction, 0.0, 1.0)) / 2))
    placed: list[_Nucleus] = []
    centers, reaches = np.zeros((n_nuclei, 2)), np.zeros(n_nuclei)

    def fits(candidate: _Nucleus) -> bool:
        inside = all(0 <= c < s for c, s in zip(candidate.center, shape))
        return inside and _fits(candidate, centers[: len(placed)], reaches[: len(placed)])

    def add(nucleus: _Nucleus) -> None:
        centers[len(placed)], reaches[len(placed)] = nucleus.center, nucleus.reach
        placed.append(nucleus)

    for _ in range(40 * n_nuclei):
        if len(placed) >= 2 * n_pairs:
            break
        anchor = _random_nucleus(rng, rng.uniform((0, 0), shape), radius_range, stain)
        partner = _touching_partner(rng, anchor, radius_range, stain)
        if fits(anchor) and fits(partner):  # both clear of the others; they overlap each other
            add(anchor)
            add(partner)
    for _ in range(40 * n_nuclei):
        if len(placed) >= n_nuclei:
            break
        candidate = _random_nucleus(rng, rng.uniform((0, 0), shape), radius_range, stain)
        if fits(candidate):
            add(candidate)
    return placed


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _lowpass(noise: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian low-pass (periodic) of an N-d array through the real FFT."""
    spectrum = np.fft.rfftn(noise)
    frequencies = [np.fft.fftfreq(n) for n in noise.shape[:-1]] + [np.fft.rfftfreq(noise.shape[-1])]
    squared = sum(
        f.reshape([-1 if axis == other else 1 for other in range(noise.ndim)]) ** 2
        for axis, f in enumerate(frequencies)
    )
    axes = tuple(range(noise.ndim))
    return np.fft.irfftn(spectrum * np.exp(-2.0 * (np.pi * sigma) ** 2 * squared), s=noise.shape, axes=axes)


def _smooth_field(rng, shape: Sequence[int], scale: float) -> np.ndarray:
    """Random field in [0, 1] varying over about ``scale`` pixels.

    Low-passed on a grid four times finer than ``scale``, then interpolated
    linearly up to ``shape``: smooth, and cheap for large images.
    """
    step = max(1, int(scale // 4))
    coarse = tuple(-(-n // step) + 1 for n in shape)
    field = _lowpass(rng.standard_normal(coarse), scale / (2.0 * step))
    if step > 1:
        field = ndi.zoom(field, [n / c for n, c in zip(shape, coarse)], order=1)
    field = field[tuple(slice(0, n) for n in shape)]
    return (field - field.min()) / max(np.ptp(field), 1e-12)


def _illumination(rng, shape, strength: float) -> np.ndarray:
    """Multiplicative illumination in [1 - strength, 1]: a tilt plus a slow ripple."""
    yy, xx = np.meshgrid(*(np.linspace(-1, 1, s) for s in shape), indexing="ij")
    theta = rng.uniform(0, 2 * np.pi)
    tilt = (np.cos(theta) * xx + np.sin(theta) * yy + 1.4) / 2.8
    field = 0.5 * tilt + 0.5 * _smooth_field(rng, shape, max(shape) / 2)
    return 1.0 - strength * (1.0 - field)


def _texture(rng, shape) -> np.ndarray:
    """Chromatin-like granular texture, zero mean and unit variance."""
    fine = ndi.gaussian_filter(rng.standard_normal(shape), 0.8)
    coarse = ndi.gaussian_filter(rng.standard_normal(shape), 2.0)
    texture = fine / fine.std() * 0.7 + coarse / coarse.std() * 0.5
    return texture / texture.std()


def _render_plane(nuclei: list[_Nucleus], shape, z: float | None = None):
    """Rasterise nuclei into one plane.

    Returns ``(labels, stain, texture_weight, nucleoli)``: labels (int32, id =
    index + 1) by nearest normalised centre, and float maps of the stain
    amount, the local chromatin-texture strength and the nucleolus signal.
    """
    labels = np.zeros(shape, np.int32)
    nearest = np.full(shape, np.inf)
    stain = np.zeros(shape)
    texture_weight = np.zeros(shape)
    nucleoli = np.zeros(shape)
    for index, nucleus in enumerate(nuclei):
        dz = 0.0 if z is None else (z - nucleus.z_center) / nucleus.z_semi_axis
        if abs(dz) >= 1.05:
            continue
        box = tuple(
            slice(max(0, int(c - nucleus.reach)), min(s, int(c + nucleus.reach) + 2))
            for c, s in zip(nucleus.center, shape)
        )
        if any(b.start >= b.stop for b in box):
            continue
        dy = np.arange(box[0].start, box[0].stop)[:, None] - nucleus.center[0]
        dx = np.arange(box[1].start, box[1].stop)[None, :] - nucleus.center[1]
        radius = np.sqrt(nucleus.radius_map(dy, dx) ** 2 + dz**2)
        mine = (radius < 1.0) & (radius < nearest[box])
        labels[box][mine] = index + 1
        nearest[box][mine] = radius[mine]
        soft = _smoothstep((1.04 - radius) / 0.08)
        rim = np.exp(-(((radius - 0.9) / 0.08) ** 2))
        stain[box] += nucleus.brightness * soft * (1.0 + 0.25 * rim)
        texture_weight[box] = np.maximum(texture_weight[box], nucleus.texture * soft)
        nucleoli[box] += _nucleoli(dy, dx, nucleus, dz * nucleus.z_semi_axis if z is not None else 0.0) * soft
    return labels, stain, texture_weight, nucleoli


def _nucleoli(dy, dx, nucleus: _Nucleus, z_offset: float) -> np.ndarray:
    """The nucleus's nucleoli: small round spots well inside it (``z_offset`` in slices from its centre)."""
    spots = np.zeros(np.broadcast_shapes(dy.shape, dx.shape))
    radius = min(nucleus.semi_axes)
    for oy, ox, sigma in nucleus.nucleoli:
        squared = (dy - oy * radius) ** 2 + (dx - ox * radius) ** 2 + z_offset**2
        spots += np.exp(-squared / (2 * sigma**2))
    return spots


def _clean_labels(labels: np.ndarray, min_size: int = 6) -> np.ndarray:
    """Keep each label's largest piece, drop slivers, give orphaned pixels to a near label, renumber 1..N."""
    footprint = ndi.generate_binary_structure(labels.ndim, 1)
    cleaned = np.zeros_like(labels)
    for value, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        pieces, count = ndi.label(labels[box] == value, structure=footprint)
        sizes = np.bincount(pieces.ravel())[1:]
        if count and sizes.max() >= min_size:
            cleaned[box][pieces == 1 + int(np.argmax(sizes))] = value
    orphans = (labels > 0) & (cleaned == 0)
    if orphans.any() and cleaned.any():
        distance, nearest = ndi.distance_transform_edt(cleaned == 0, return_indices=True)
        fill = orphans & (distance <= 2.0)
        cleaned[fill] = cleaned[tuple(index[fill] for index in nearest)]
    ids = np.unique(cleaned[cleaned > 0])
    lookup = np.zeros(int(labels.max()) + 1, np.int32)
    lookup[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lookup[cleaned]


def _default_count(shape, radius_range) -> int:
    mean_area = np.pi * np.mean(radius_range) ** 2
    return max(1, int(round(_COVERAGE * shape[0] * shape[1] / mean_area)))
