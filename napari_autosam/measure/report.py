"""A one-page HTML slide report: thumbnail, mask overlay, density heat map and the summary table.

The pictures are PNGs embedded in the page (one self-contained file), drawn
with NumPy and Pillow from the thumbnails gathered while measuring, so no
plotting library is needed.  No napari or Qt here.
"""

from __future__ import annotations

import base64
import html
import io
import os

import numpy as np

from .table import Calibration

#: Colour ramp of the heat map (dark blue → teal → yellow), interpolated linearly.
_RAMP = np.array([[13, 8, 135], [84, 2, 163], [139, 10, 165], [185, 50, 137], [219, 92, 104], [244, 136, 73],
                  [254, 188, 43], [240, 249, 33]], float)


def ramp_colours(values: np.ndarray) -> np.ndarray:
    """``(N, 4)`` RGBA in 0..1 for ``values`` scaled from their 2nd to 98th percentile onto the heat-map ramp."""
    values = np.asarray(values, float)
    finite = values[np.isfinite(values)]
    low, high = (np.percentile(finite, (2, 98)) if len(finite) else (0.0, 1.0))
    scaled = np.clip((values - low) / (high - low if high > low else 1.0), 0, 1)
    scaled = np.where(np.isfinite(scaled), scaled, 0.0)
    position = scaled * (len(_RAMP) - 1)
    low_i = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    t = (position - low_i)[:, None]
    rgb = ((1 - t) * _RAMP[low_i] + t * _RAMP[low_i + 1]) / 255
    return np.column_stack((rgb, np.ones(len(values))))


def histogram_picture(values: np.ndarray, *, bins: int = 40, size: tuple[int, int] = (120, 320)) -> np.ndarray:
    """An ``H×W×3`` uint8 bar chart of the finite ``values`` (white background, one bar per bin)."""
    height, width = size
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    picture = np.full((height, width, 3), 255, np.uint8)
    if not len(values):
        return picture
    counts, _ = np.histogram(values, bins=bins)
    tops = (counts / max(counts.max(), 1) * (height - 2)).astype(int)
    edges = np.linspace(0, width, bins + 1).astype(int)
    for k in range(bins):
        picture[height - tops[k] :, edges[k] : max(edges[k] + 1, edges[k + 1] - 1)] = (48, 110, 200)
    return picture


def _png(array: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _rgb(thumbnail: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """The image thumbnail as 8-bit RGB (grey or stretched channels for other images), or white."""
    if thumbnail is None:
        return np.full((*shape, 3), 255, np.uint8)
    image = thumbnail.astype(float)
    if image.ndim == 2:
        image = image[..., None]
    image = image[..., :3] if image.shape[-1] >= 3 else np.repeat(image[..., :1], 3, axis=-1)
    if thumbnail.dtype != np.uint8:
        low, high = np.percentile(image, (1, 99))
        image = (image - low) / max(high - low, 1e-9) * 255
    return np.clip(image, 0, 255).astype(np.uint8)


def overlay(thumbnail: np.ndarray | None, labels: np.ndarray) -> np.ndarray:
    """Objects tinted in a colour per label (from a hash of the label) over the thumbnail, outlines darker."""
    from skimage.segmentation import find_boundaries

    rgb = _rgb(thumbnail, labels.shape).astype(float)
    hashed = (labels.astype(np.uint64) * np.uint64(2654435761)) >> np.uint64(8)  # scattered: neighbours differ
    colours = np.stack([(hashed >> np.uint64(8 * k)) & np.uint64(255) for k in range(3)], -1).astype(float)
    colours = 60 + 0.75 * colours  # bright enough to see on dark tissue
    inside = labels > 0
    rgb[inside] = 0.5 * rgb[inside] + 0.5 * colours[inside]
    rgb[find_boundaries(labels, mode="inner")] *= 0.4
    return rgb.astype(np.uint8)


def density_map(x: np.ndarray, y: np.ndarray, extent: tuple[float, float], cells: int = 64) -> tuple[np.ndarray, float]:
    """Objects per grid cell (level-0 centroids ``x``, ``y`` over a ``(height, width)`` extent) as a coloured picture.

    Returns the RGB picture (empty cells white) and the count of the fullest cell.
    """
    height, width = extent
    side = max(height, width) / cells
    rows, cols = max(1, int(np.ceil(height / side))), max(1, int(np.ceil(width / side)))
    counts, _, _ = np.histogram2d(y, x, bins=(rows, cols), range=((0, rows * side), (0, cols * side)))
    top = float(counts.max()) if counts.size else 0.0
    scaled = counts / top if top else counts
    position = scaled * (len(_RAMP) - 1)
    low = np.floor(position).astype(int).clip(0, len(_RAMP) - 2)
    t = (position - low)[..., None]
    picture = (1 - t) * _RAMP[low] + t * _RAMP[low + 1]
    picture[counts == 0] = 255
    return np.repeat(np.repeat(picture.astype(np.uint8), 8, axis=0), 8, axis=1), top


def _figure(title: str, png: str, note: str = "") -> str:
    caption = html.escape(title) + (f" <small>{html.escape(note)}</small>" if note else "")
    return f'<figure><img src="data:image/png;base64,{png}" alt="{html.escape(title)}"><figcaption>{caption}</figcaption></figure>'


def report_html(*, title: str, table, summary, calibration: Calibration, shape: tuple[int, int],
                thumbnails: dict[str, np.ndarray], summary_text: str) -> str:
    """The report page as one HTML string (pictures embedded)."""
    labels = thumbnails.get("labels")
    image = thumbnails.get("image")
    figures = []
    if image is not None:
        figures.append(_figure("Image", _png(_rgb(image, image.shape[:2]))))
    if labels is not None:
        figures.append(_figure("Objects", _png(overlay(image, labels))))
    extent = (shape[0] * calibration.downsample, shape[1] * calibration.downsample)
    heat, top = density_map(table["centroid_x_px"].to_numpy(), table["centroid_y_px"].to_numpy(), extent)
    cell = max(extent) / 64
    cell_text = (f"{cell * calibration.level0_mpp:.0f} µm" if calibration.calibrated else f"{cell:.0f} px")
    figures.append(_figure("Density", _png(heat), f"objects per {cell_text} square, up to {top:.0f} (yellow)"))
    units = "µm" if calibration.calibrated else "px (no µm/px known)"
    table_html = summary.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, classes="summary")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}} h1{{font-size:1.4em;margin:0 0 .2em}}
.figures{{display:flex;flex-wrap:wrap;gap:1em}} figure{{margin:0}} img{{max-width:31vw;max-height:60vh;
image-rendering:pixelated;border:1px solid #ccc}} figcaption{{font-size:.9em;color:#555}}
table.summary{{border-collapse:collapse;margin-top:1em}} .summary td,.summary th{{padding:.2em .7em;
border-bottom:1px solid #ddd;text-align:right}} .summary td:first-child,.summary td:nth-child(2){{text-align:left}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(summary_text)} · {shape[0]}×{shape[1]} px · lengths in {html.escape(units)}</p>
<div class="figures">{''.join(figures)}</div>
{table_html}
</body></html>
"""


def write_report(path: str | os.PathLike, **content) -> os.PathLike:
    """Write :func:`report_html` atomically; returns the path."""
    from ..io.atomic import atomic_write_text

    return atomic_write_text(path, report_html(**content))
