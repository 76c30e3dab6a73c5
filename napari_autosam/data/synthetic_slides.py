"""Write synthetic whole-slide files for tests, benchmarks and demos.

* :func:`write_svs`: an Aperio-style pyramidal ``.svs`` (JPEG tiles, a
  thumbnail page, ``Aperio Image Library …|AppMag = 40|MPP = 0.25``
  description) that OpenSlide and tifffile both open;
* :func:`write_tiled_tiff`: a generic tiled pyramidal TIFF (levels as
  reduced-resolution pages, OpenSlide's "generic-tiff");
* :func:`write_ome_tiff`: a pyramidal OME-TIFF (levels in SubIFDs,
  ``PhysicalSizeX/Y`` in µm);
* :func:`write_ome_zarr`: an OME-Zarr image folder through ome-zarr's writer;
* :func:`write_big_svs`: a huge slide made cheaply of a few pre-compressed
  JPEG tiles repeated (a 100,000² slide in seconds, about 1 GB on disk).

Levels are block means of level 0 by the given downsamples.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["pattern", "pyramid", "write_big_svs", "write_ome_tiff", "write_ome_zarr", "write_svs", "write_tiled_tiff"]


def pattern(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A tissue-like ``height×width×3`` uint8 RGB image: pink stroma, purple blobs, white gaps."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.empty((height, width, 3), np.float32)
    image[...] = (235, 180, 205)
    for _ in range(max(3, height * width // 4000)):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(4, 12)
        blob = ((y - cy) ** 2 + (x - cx) ** 2) < r * r
        image[blob] = (110, 60, 150)
    image[(np.sin(x / 37.0) + np.cos(y / 53.0)) > 1.6] = (250, 250, 250)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def pyramid(image: np.ndarray, downsamples=(4, 16)) -> list[np.ndarray]:
    """``[image, image shrunk by each downsample]`` (block means, sizes rounded down)."""
    levels = [image]
    for d in downsamples:
        h, w = image.shape[0] // d, image.shape[1] // d
        block = image[: h * d, : w * d].reshape(h, d, w, d, *image.shape[2:]).astype(np.float32)
        levels.append(np.rint(block.mean(axis=(1, 3))).astype(image.dtype))
    return levels


def _aperio_description(width: int, height: int, level_width: int, level_height: int, mpp: float | None,
                        magnification: float | None, tile: int) -> str:
    text = f"Aperio Image Library v12.0.0\n{width}x{height} [0,0 {level_width}x{level_height}] ({tile}x{tile}) JPEG/RGB Q=80"
    if magnification is not None:
        text += f"|AppMag = {magnification:g}"
    if mpp is not None:
        text += f"|MPP = {mpp:g}"
    return text


def write_svs(path: str | os.PathLike, image: np.ndarray, *, downsamples=(4, 16), mpp: float | None = 0.25,
              magnification: float | None = 40, tile: int = 256) -> Path:
    """An Aperio-style ``.svs``: level 0, a stripped thumbnail, then the reduced levels, all RGB."""
    import tifffile

    path = Path(path)
    levels = pyramid(image, downsamples)
    height, width = image.shape[:2]
    jpeg = {"compression": "jpeg", "photometric": "rgb", "subsampling": (2, 2), "metadata": None}
    with tifffile.TiffWriter(path, bigtiff=image.nbytes > 2**31) as tif:
        for index, level in enumerate(levels):
            description = _aperio_description(width, height, level.shape[1], level.shape[0],
                                              mpp if index == 0 else None, magnification if index == 0 else None, tile)
            tif.write(level, tile=(tile, tile), description=description, **jpeg)
            if index == 0:
                thumb = levels[-1]
                tif.write(thumb, description=f"Aperio Image Library v12.0.0\n{width}x{height} -> "
                          f"{thumb.shape[1]}x{thumb.shape[0]} - ", **jpeg)
    return path


def write_tiled_tiff(path: str | os.PathLike, image: np.ndarray, *, downsamples=(4, 16), mpp: float | None = None,
                     tile: int = 256) -> Path:
    """A generic tiled pyramidal TIFF; ``mpp`` goes into the resolution tags (centimetre unit)."""
    import tifffile

    path = Path(path)
    resolution = {} if mpp is None else {"resolutionunit": "CENTIMETER"}
    with tifffile.TiffWriter(path) as tif:
        for index, level in enumerate(pyramid(image, downsamples)):
            if mpp is not None:
                per_cm = 1e4 / (mpp * image.shape[1] / level.shape[1])
                resolution["resolution"] = (per_cm, per_cm)
            tif.write(level, tile=(tile, tile), compression="jpeg", photometric="rgb", metadata=None,
                      subfiletype=1 if index else 0, **resolution)
    return path


def write_ome_tiff(path: str | os.PathLike, image: np.ndarray, *, downsamples=(2, 4), mpp: float | None = 0.5,
                   tile: int = 256) -> Path:
    """A pyramidal OME-TIFF with the reduced levels in SubIFDs and ``PhysicalSizeX/Y`` in µm."""
    import tifffile

    path = Path(path)
    levels = pyramid(image, downsamples)
    metadata = {"axes": "YXS"}
    if mpp is not None:
        metadata.update(PhysicalSizeX=mpp, PhysicalSizeY=mpp, PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")
    options = {"tile": (tile, tile), "compression": "zlib", "photometric": "rgb"}
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(levels[0], subifds=len(levels) - 1, metadata=metadata, **options)
        for level in levels[1:]:
            tif.write(level, subfiletype=1, metadata=None, **options)
    return path


def write_ome_zarr(path: str | os.PathLike, image: np.ndarray, *, levels: int = 3, mpp: float | None = 0.5,
                   chunk: int = 256) -> Path:
    """An OME-Zarr image (``c, y, x``; downsampled by 2 per level) written with ome-zarr's writer."""
    import zarr
    from ome_zarr.writer import write_image

    path = Path(path)
    data = np.moveaxis(image, -1, 0) if image.ndim == 3 else image
    axes = ["c", "y", "x"] if image.ndim == 3 else ["y", "x"]
    kwargs = {}
    if mpp is not None:
        scale = {"c": 1.0, "y": mpp, "x": mpp} if image.ndim == 3 else {"y": mpp, "x": mpp}
        kwargs = {"scale": scale, "axes_units": {"y": "micrometer", "x": "micrometer"}}
    chunks = (data.shape[0], chunk, chunk) if image.ndim == 3 else (chunk, chunk)
    root = zarr.open_group(str(path), mode="w")
    write_image(data, root, axes=axes, scale_factors=[2**i for i in range(1, levels)],
                storage_options={"chunks": chunks}, **kwargs)
    return path


def write_big_svs(path: str | os.PathLike, size: int, *, tile: int = 512, mpp: float = 0.25,
                  magnification: float = 40, variants: int = 4) -> Path:
    """A ``size×size`` Aperio-style slide of ``variants`` pre-compressed JPEG tiles repeated.

    Each level is written from an iterator of already-encoded tiles, so
    nothing of slide size is ever in memory and writing takes seconds.
    Levels shrink by 4 until the smallest is under ``2·tile`` pixels.
    """
    import imagecodecs
    import tifffile

    path = Path(path)
    tiles = [imagecodecs.jpeg_encode(pattern(tile, tile, seed=i), level=75, colorspace="RGB",
                                     outcolorspace="YCBCR", subsampling=(2, 2)) for i in range(variants)]
    jpeg = {"compression": "jpeg", "photometric": "rgb", "subsampling": (2, 2), "metadata": None}

    def level(height: int, width: int, index: int, with_meta: bool):
        count = -(-height // tile) * -(-width // tile)
        description = _aperio_description(size, size, width, height, mpp if with_meta else None,
                                          magnification if with_meta else None, tile)
        return {"data": (tiles[(i + index) % variants] for i in range(count)), "shape": (height, width, 3),
                "dtype": np.uint8, "tile": (tile, tile), "description": description, **jpeg}

    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(**level(size, size, 0, True))
        tif.write(pattern(256, 256), description="Aperio Image Library v12.0.0\nthumbnail", **jpeg)
        factor = 4
        while -(-size // factor) >= tile:
            side = -(-size // factor)
            tif.write(**level(side, side, factor, False))
            factor *= 4
    return path
