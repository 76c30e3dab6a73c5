"""``napari-autosam demo``: the whole loop on the sample image, offline, in about a minute.

With a display it opens napari with the H&E sample and the AutoSAM widget and
drives the widget through the loop while you watch: segment with the
untrained prompt generator (noise), accept the sample's true mask as if you
had corrected it (plus five more synthetic images "corrected earlier"),
fine-tune in the background with the live plot, and segment again with the
new version; it ends in the side-by-side comparison.  The tiny SAM (random
but fixed weights) keeps it offline; h(g(I)) and AutoSAM then learn the
nuclei from the corrections alone.

Without a display (Linux without ``$DISPLAY``) it says so and runs the same
loop headless, writing the masks and an overview PNG to the output folder.
Everything goes to ``<data dir>/demo/<time stamp>`` unless ``--out`` says
otherwise -- never the working directory.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

#: Fine-tuning settings of the demo: about a minute on a laptop CPU with the tiny SAM.
DEMO_TRAINING = {"epochs": 10, "h_epochs": 10, "batch_size": 2, "h_batch_size": 4, "input_size": 128,
                 "variants": ("identity", "hflip"), "patience": None, "lr": 1e-3, "h_lr": 1e-3, "seed": 0}
#: How many extra synthetic images count as "corrected earlier".
EXTRA_CORRECTIONS = 5


def demo_folder(out: str | None) -> Path:
    from ..annotations import data_dir

    if out:
        return Path(out).expanduser()
    return data_dir() / "demo" / time.strftime("%Y%m%d-%H%M%S")


def extra_corrections() -> list[tuple]:
    """``(image, mask)`` pairs standing in for corrections accepted on earlier images."""
    from ..data.synthetic import make_nuclei_dataset

    return [(image, labels > 0) for image, labels in make_nuclei_dataset(EXTRA_CORRECTIONS, (256, 256), seed=11, stain="he")]


def has_display() -> bool:
    if not sys.platform.startswith("linux"):
        return True
    if os.environ.get("QT_QPA_PLATFORM", "").startswith(("offscreen", "minimal")):
        return False  # napari's canvas needs OpenGL, which these platforms lack
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def dice(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def run_headless(folder: Path, sam_name: str = "tiny") -> dict:
    """The demo's loop without napari: segment, accept, fine-tune, segment again; write the results."""
    import numpy as np

    from .._sample_data import nuclei_he
    from ..annotations import AnnotationStore
    from ..inference import Segmenter
    from ..io.images import write_tiff
    from ..models.store import ModelStore
    from ..progress import run
    from ..sam.cache import EmbeddingCache
    from ..sam.registry import load_sam
    from ..training import TrainConfig, samples_from_arrays, train
    from .progressbar import ProgressBar

    import torch

    # As the GUI's workers do: leave one core free.  Every core is often slower for these small
    # models on a laptop (and 3-4x slower on machines whose cores are hyper-threads of one).
    torch.set_num_threads(int(os.environ.get("NAPARI_AUTOSAM_THREADS") or max(1, (os.cpu_count() or 2) - 1)))
    started = time.perf_counter()
    (image, _, _), (truth, _, _) = nuclei_he()
    sam = ProgressBar().run(load_sam(sam_name))
    cache = EmbeddingCache(sam, folder / "embeddings")
    segmenter = Segmenter(sam, cache=cache)
    before = ProgressBar().run(segmenter.segment(image))
    store = AnnotationStore(folder / "annotations")
    store.accept(image, truth, source="napari-autosam sample: nuclei H&E", layer_name="nuclei H&E")
    for i, (extra, mask) in enumerate(extra_corrections()):
        store.accept(extra, mask, source=f"synthetic H&E #{i}")
    images, masks, names = store.arrays()
    result = ProgressBar().run(train(sam, samples_from_arrays(images, masks, names), config=TrainConfig(**DEMO_TRAINING),
                                     store=ModelStore(folder / "models" / "tiny"), cache=cache))
    segmenter.set_model(result.model)
    after = run(segmenter.segment(image))
    seconds = time.perf_counter() - started
    for name, array in (("autosam_untrained", before.autosam_mask), ("autosam", after.autosam_mask),
                        ("h", after.h_mask), ("ground_truth", truth)):
        write_tiff(folder / f"{name}.tif", np.asarray(array))
    _overview(folder / "overview.png", image, before.autosam_mask, after.autosam_mask, after.h_mask)
    return {"seconds": seconds, "version": result.version, "dice_untrained": dice(before.autosam_mask, truth),
            "dice_autosam": dice(after.autosam_mask, truth), "dice_h": dice(after.h_mask, truth), "folder": folder}


def _overview(path: Path, image, *masks) -> None:
    """A PNG strip: the image, then each mask as a coloured overlay."""
    import numpy as np
    from skimage.io import imsave

    panels = [image]
    for mask, colour in zip(masks, ([255, 80, 80], [80, 220, 255], [255, 160, 30])):
        overlay = image.astype(np.float32).copy()
        overlay[np.asarray(mask) > 0] = 0.45 * overlay[np.asarray(mask) > 0] + 0.55 * np.asarray(colour)
        panels.append(overlay.astype(np.uint8))
    imsave(path, np.concatenate(panels, axis=1), check_contrast=False)


def _run(args) -> int:
    folder = demo_folder(args.out)
    if args.headless or not has_display():
        if not args.headless:
            print("napari-autosam demo: no display found (no $DISPLAY or $WAYLAND_DISPLAY), so napari cannot open; "
                  "running the same loop headless instead.", file=sys.stderr)
        summary = run_headless(folder, args.sam)
        print(f"napari-autosam demo (headless) done in {summary['seconds']:.0f} s, model {summary['version']}: "
              f"Dice with the true mask {summary['dice_untrained']:.2f} untrained → AutoSAM {summary['dice_autosam']:.2f}, "
              f"h(g(I)) {summary['dice_h']:.2f}. Results in {folder} (overview.png)")
        return 0
    from .._qt.demo import run_gui

    return run_gui(folder, sam_name=args.sam, quit_after=args.quit_after, screenshot=args.screenshot)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="open napari with the sample image and show the whole loop (offline, about a minute)",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    parser.add_argument("--out", metavar="DIR", help="folder for the demo's corrections and models "
                        "(default: <data dir>/demo/<time stamp>)")
    parser.add_argument("--sam", default="tiny", help="SAM to use (default: tiny, which needs no download)")
    parser.add_argument("--headless", action="store_true", help="run the loop without napari and write the results")
    parser.add_argument("--quit-after", action="store_true", help="close napari when the demo has shown its result")
    parser.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the final view")
    parser.set_defaults(func=_run)
