"""Take docs/slides.md's screenshot: an Aperio .svs opened in µm, segmented at level 1, labels over the slide.

    python docs/make_slide_screenshot.py      # re-runs itself under xvfb-run when there is no display

The slide is a mosaic of synthetic H&E nuclei written as a real Aperio-style
``.svs`` (JPEG tiles, MPP = 0.25, AppMag = 40, reduced levels) and opened
through the plugin's reader (OpenSlide for the metadata).  The model is the
known-answer model of ``napari_autosam.inference.testing`` set to "nuclei are
dark" and the segmentation a fast h(g(I)) preview, so it takes seconds and
needs no trained weights.  Writes docs/images/09-slide.png.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from make_review_screenshot import autosam_widget, offline_viewer, save  # same folder (on sys.path)

OUT = Path(__file__).resolve().parent / "images" / "09-slide.png"
TILE = 512


def mosaic(rows: int = 4, cols: int = 6) -> np.ndarray:
    from napari_autosam.data.synthetic import make_nuclei_image

    image = np.zeros((rows * TILE, cols * TILE, 3), np.uint8)
    for k in range(rows * cols):
        i, j = divmod(k, cols)
        tile, _ = make_nuclei_image((TILE, TILE), stain="he", rgb=True, seed=500 + k)
        image[i * TILE : (i + 1) * TILE, j * TILE : (j + 1) * TILE] = tile
    return image


def main() -> None:
    tmp, viewer = offline_viewer()
    from napari_autosam.data.synthetic_slides import write_svs
    from napari_autosam.inference.testing import threshold_model

    path = write_svs(tmp / "biopsy.svs", mosaic(), downsamples=(2, 4))
    viewer.open(str(path), plugin="napari-autosam")
    widget = autosam_widget(viewer, threshold_model(0.55, gain=-40.0), "known-answer model (dark nuclei)")
    seg = widget.segment_section
    seg.select("biopsy", "image")
    seg.resolution_combo.setCurrentIndex(1)  # level 1: 0.5 µm/px
    seg.resolution_combo.activated.emit(1)
    seg.segment(preview=True)
    h = viewer.layers["h(g(I))"]
    h.contour = 2
    viewer.layers.selection.active = h
    viewer.reset_view()
    viewer.camera.zoom *= 2.5  # a field of view a pathologist would look at: a few hundred µm
    widget.show_section(seg)
    print(f"labels at {list(h.scale)} µm/px, shape {h.data.shape}")
    save(viewer, OUT)


if __name__ == "__main__":
    main()
