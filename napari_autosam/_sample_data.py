"""napari sample data: synthetic nuclei from the project's own generator, each with its mask.

Returns napari layer-data tuples; no napari or Qt here.  The images are
made on the fly (deterministic seeds), so nothing is downloaded.
"""

from __future__ import annotations

from typing import Any

from .data.synthetic import make_nuclei_image, make_nuclei_stack

LayerData = tuple[Any, dict[str, Any], str]

#: Size of the 2D samples: small enough for a laptop CPU, big enough to hold ~30 nuclei.
SAMPLE_SHAPE = (384, 384)
SAMPLE_SEED = 7


def _pair(image, labels, name: str, *, rgb: bool) -> list[LayerData]:
    source = f"napari-autosam sample: {name}"
    return [
        (image, {"name": name, "rgb": rgb, "metadata": {"source": source}}, "image"),
        (labels, {"name": f"{name} ground truth", "opacity": 0.5, "visible": False,
                  "metadata": {"source": source, "ground_truth": True}}, "labels"),
    ]


def nuclei_he() -> list[LayerData]:
    """An H&E-like RGB image (uint8, 384×384×3) of nuclei and their instance labels."""
    image, labels = make_nuclei_image(SAMPLE_SHAPE, stain="he", seed=SAMPLE_SEED)
    return _pair(image, labels, "nuclei H&E", rgb=True)


def nuclei_fluorescence() -> list[LayerData]:
    """A DAPI-like fluorescence image (uint16, 384×384) of nuclei and their instance labels."""
    image, labels = make_nuclei_image(SAMPLE_SHAPE, stain="fluorescence", seed=SAMPLE_SEED)
    return _pair(image, labels, "nuclei fluorescence", rgb=False)


def nuclei_stack() -> list[LayerData]:
    """A small fluorescence z-stack (uint16, 8×192×192) of nuclei and their 3D instance labels."""
    stack, labels = make_nuclei_stack(8, (192, 192), seed=SAMPLE_SEED)
    return _pair(stack, labels, "nuclei stack", rgb=False)
