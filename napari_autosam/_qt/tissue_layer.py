"""The ``tissue`` layer: the detected tissue of a slide, shown over it and editable before segmenting.

The mask comes from :func:`napari_autosam.io.tissue.slide_tissue` (a low-resolution
view of the slide); the layer is an ordinary Labels layer (1 = tissue) at the mask's
own coarse grid, scaled to lie over the slide, so the user paints or erases with
napari's tools.  :func:`tissue_of` reads the edited layer back as the TissueMask the
two-speed segmentation takes.
"""

from __future__ import annotations

import numpy as np

from ..io.slides import slide_from_layer
from ..io.tissue import TissueMask, slide_tissue

LAYER_NAME = "tissue"
META_KEY = "autosam_tissue"


def layer_slide(image_layer):
    """The slide behind an image layer; ValueError when it is not a slide opened by this plugin."""
    levels = image_layer.data if image_layer.multiscale else [image_layer.data]
    slide = slide_from_layer(levels, image_layer.metadata)
    if slide is None:
        raise ValueError(f"{image_layer.name} is not a slide opened by AutoSAM: no tissue detection for it")
    return slide


def add_tissue_layer(viewer, image_layer, tissue: TissueMask | None = None):
    """Add (or refresh) the editable ``tissue`` layer of a slide image layer; returns it.

    ``tissue``: a mask already found (e.g. off the GUI thread); None: detect it now.

    Raises
    ------
    ValueError
        The layer is not a slide opened by this plugin (no pyramid metadata).
    """
    if tissue is None:
        tissue = slide_tissue(layer_slide(image_layer))
    base_scale = np.asarray(image_layer.scale[-2:], float)
    scale = base_scale * np.asarray(tissue.downsample)
    translate = np.asarray(image_layer.translate[-2:], float) + (np.asarray(tissue.downsample) - 1) / 2 * base_scale
    metadata = {META_KEY: {"downsample": list(tissue.downsample), "kind": tissue.kind, "source": image_layer.name}}
    data = tissue.mask.astype(np.uint8)
    if LAYER_NAME in viewer.layers:
        layer = viewer.layers[LAYER_NAME]
        layer.data, layer.scale, layer.translate, layer.metadata = data, scale, translate, metadata
        return layer
    units = getattr(image_layer, "units", None)
    kwargs = {"units": list(units)[-2:]} if units is not None else {}  # the image's units: no napari warning
    layer = viewer.add_labels(data, name=LAYER_NAME, scale=scale, translate=translate, opacity=0.3,
                              metadata=metadata, **kwargs)
    return layer


def tissue_of(layer) -> TissueMask | None:
    """The TissueMask a (possibly edited) ``tissue`` layer holds, or None for another layer."""
    info = layer.metadata.get(META_KEY) if isinstance(layer.metadata, dict) else None
    if not isinstance(info, dict):
        return None
    downsample = tuple(float(v) for v in info["downsample"])
    return TissueMask(np.asarray(layer.data) > 0, downsample, str(info["kind"]))


def tissue_for(viewer, target) -> TissueMask | None:
    """The TissueMask of the ``tissue`` layer made for the image ``target`` (maybe edited by the user), else None."""
    layer = viewer.layers[LAYER_NAME] if LAYER_NAME in viewer.layers else None
    if layer is None or (layer.metadata.get(META_KEY) or {}).get("source") != target.name:
        return None
    return tissue_of(layer)


def find_tissue(section, name: str) -> bool:
    """Find the tissue of the slide layer ``name`` on ``section``'s runner (off the GUI thread), then show the layer."""
    from ..progress import single_step
    from . import notify

    if name not in section.viewer.layers:
        notify.info("Open a slide first (File ▸ Open).")
        return False
    layer = section.viewer.layers[name]
    try:
        slide = layer_slide(layer)
    except ValueError as exc:
        notify.error("Finding the tissue", exc)
        return False

    def done(tissue) -> None:
        if name in section.viewer.layers:
            add_tissue_layer(section.viewer, layer, tissue)
            section.note.setText(f"Tissue: {tissue.fraction:.0%} of {name} ({tissue.kind}). Edit the 'tissue' "
                                 "layer if needed, then Segment: only the tissue is segmented.")

    return section.runner.start(f"Finding the tissue of {name}",
                                lambda token: single_step("tissue", "finding the tissue", lambda: slide_tissue(slide)),
                                done)
