"""Synthetic slides with glass around the tissue, for tests and benchmarks of tissue detection.

* :func:`tissue_shape`: a realistic section outline — a few irregular lobes
  covering a chosen share of the slide, smooth edges, a few holes;
* :func:`tissue_image`: a small brightfield image with that shape filled with
  :func:`~napari_autosam.data.synthetic_slides.pattern` on near-white, slightly noisy glass;
* :func:`write_tissue_svs`: an Aperio-style ``.svs`` of any size (50,000² in
  minutes) written tile by tile, never held whole.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .synthetic_slides import _aperio_description, pattern

__all__ = ["GLASS", "glass", "tissue_image", "tissue_shape", "write_tissue_svs"]

#: The colour of empty glass in transmitted light (a slightly blue white).
GLASS = (242, 242, 246)


def tissue_shape(height: int, width: int, fraction: float = 0.4, seed: int = 0) -> np.ndarray:
    """``height×width`` bool: a few smooth irregular lobes covering about ``fraction`` of the plane."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=(height, width)), sigma=max(height, width) / 14)
    y, x = np.mgrid[0:height, 0:width]
    # Sections lie away from the slide's edges: weigh the noise down towards them.
    edge = np.minimum.reduce([y, height - 1 - y, x, width - 1 - x]) / (0.15 * max(height, width))
    field = noise / (noise.std() + 1e-9) + np.minimum(edge, 1.0) * 2.0
    return field > np.quantile(field, 1.0 - fraction)


def glass(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Empty glass: ``height×width×3`` uint8 near :data:`GLASS` with scanner noise."""
    rng = np.random.default_rng(seed)
    return np.clip(np.asarray(GLASS, np.float32) + rng.normal(0, 2.0, (height, width, 3)), 0, 255).astype(np.uint8)


def tissue_image(height: int, width: int, fraction: float = 0.4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A brightfield ``height×width×3`` uint8 image and its true ``height×width`` tissue mask."""
    shape = tissue_shape(height, width, fraction, seed)
    image = np.where(shape[..., None], pattern(height, width, seed), glass(height, width, seed))
    return image, shape


def _edge_tile(block: np.ndarray, span: int, tissue: np.ndarray, glass_tile: np.ndarray) -> np.ndarray:
    """A tile on the tissue's edge: ``tissue`` where the shape cells ``block`` (``span`` per tile side, fewer at
    the slide's border) hold tissue, ``glass_tile`` elsewhere."""
    tile = tissue.shape[0]
    full = np.zeros((span, span), bool)
    full[: block.shape[0], : block.shape[1]] = block
    if span <= tile:
        inside = np.repeat(np.repeat(full, tile // span, 0), tile // span, 1)
    else:  # coarse levels: a cell is smaller than a pixel
        inside = full[:: span // tile, :: span // tile]
    return np.where(inside[..., None], tissue, glass_tile)


def write_tissue_svs(path: str | os.PathLike, size: int, *, fraction: float = 0.4, tile: int = 512,
                     mpp: float = 0.25, seed: int = 0, variants: int = 4) -> tuple[Path, np.ndarray]:
    """A ``size×size`` Aperio-style slide of tissue (about ``fraction``) on glass, and its coarse true mask.

    The shape is :func:`tissue_shape` on a grid of ``tile/16`` level-0 pixels per cell; tiles
    wholly inside use ``variants`` tissue patterns, wholly outside a glass tile, edge tiles mix
    the two along the shape.  Levels shrink by 4 until under ``2·tile`` pixels.
    Returns the path and the mask (one pixel per ``tile/16`` level-0 pixels).
    """
    import imagecodecs
    import tifffile

    path = Path(path)
    cell = tile // 16
    cells = -(-size // cell)
    shape = tissue_shape(cells, cells, fraction, seed)
    tissue_tiles = [pattern(tile, tile, seed=i) for i in range(variants)]
    glass_tile = glass(tile, tile, seed)

    def encode(image: np.ndarray) -> bytes:
        return imagecodecs.jpeg_encode(image, level=80, colorspace="RGB", outcolorspace="YCBCR", subsampling=(2, 2))

    glass_jpeg = encode(glass_tile)
    tissue_jpegs = [encode(t) for t in tissue_tiles]

    def tiles(factor: int):
        """Encoded tiles of the level shrunk by ``factor`` (row-major)."""
        side = -(-size // factor)
        n = -(-side // tile)
        span = tile * factor // cell  # shape cells under one tile of this level
        for r in range(n):
            for c in range(n):
                block = shape[r * span : (r + 1) * span, c * span : (c + 1) * span]
                k = (r * 7 + c * 3) % variants
                if not block.any():
                    yield glass_jpeg
                elif block.all() and block.shape == (span, span):
                    yield tissue_jpegs[k]
                else:
                    yield encode(_edge_tile(block, span, tissue_tiles[k], glass_tile))

    jpeg = {"compression": "jpeg", "photometric": "rgb", "subsampling": (2, 2), "metadata": None}
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        factor = 1
        while factor == 1 or -(-size // factor) >= 2 * tile:
            side = -(-size // factor)
            description = _aperio_description(size, size, side, side, mpp if factor == 1 else None,
                                              40 if factor == 1 else None, tile)
            tif.write(tiles(factor), shape=(side, side, 3), dtype=np.uint8, tile=(tile, tile),
                      description=description, **jpeg)
            if factor == 1:
                thumb = np.where(shape[::4, ::4, None], np.uint8(200), np.asarray(GLASS, np.uint8))
                tif.write(thumb, description="Aperio Image Library v12.0.0\nthumbnail", **jpeg)
            factor *= 4
    return path, shape
