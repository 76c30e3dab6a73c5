"""The demo's loop, without napari: its data, its settings, its steps and the headless run.

``napari-autosam demo`` shows the whole loop on the H&E sample: segment with
the untrained prompt generator, accept a corrected mask (the sample's true
mask stands in for the user's correction, with a few synthetic images
"corrected earlier"), fine-tune, segment again and compare.  The GUI driver
(:mod:`napari_autosam._qt.demo_driver`) runs these steps through the widget; the
headless run (:func:`run_headless`) runs them through the engine and writes
the masks and a captioned overview PNG.  Both take their data and settings
from here, so the two cannot drift apart.  No napari or Qt here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .losses import dice

#: Fine-tuning settings of the demo: 100 steps each for g and h, no time limit (the widget shows them
#: in its Steps and Time limit boxes).
DEMO_TRAINING = {"steps": 100, "h_steps": 100, "time_limit": None, "batch_size": 2, "h_batch_size": 4,
                 "input_size": 128, "variants": ("identity", "hflip"), "patience": None, "lr": 1e-3, "h_lr": 1e-3,
                 "seed": 0}
#: How many extra synthetic images count as "corrected earlier".
EXTRA_CORRECTIONS = 5
#: What each step of the loop tells the user (the GUI shows them on the canvas), in plain words.
STEPS = {
    "segment": "1/4  Segmenting with a new, untrained model (expect noise)…",
    "accepted": "2/4  Accepted the corrected mask (+{extra} corrected earlier).\n"
                "      Teaching the model from them in the background…",
    "trained": "3/4  Trained: the new model version is in use; segmenting again…",
    "result": "4/4  {version} after {seconds:.0f} s. Overlap with the true nuclei (Dice, 0 none to 1 perfect):\n"
              "      AutoSAM {dice_autosam:.2f}, fast preview h(g(I)) {dice_h:.2f} (untrained {dice_untrained:.2f})",
}
#: Captions of the overview's panels, left to right ({dice} is filled in).
OVERVIEW_CAPTIONS = ("H&E image", "true nuclei (ground truth)", "untrained model (Dice {dice:.2f})",
                     "trained: AutoSAM (Dice {dice:.2f})", "trained: fast preview (Dice {dice:.2f})")
#: The overview's one-line explanation, under the panels.
OVERVIEW_NOTE = ("Coloured: pixels called nucleus. Dice: overlap with the true nuclei, 0 = none, 1 = perfect. "
                 "AutoSAM: SAM steered by the trained prompt generator; fast preview: the same model without SAM.")


def demo_folder(out: str | os.PathLike | None) -> Path:
    """``out``, or a new ``<data>/demo/<time stamp>`` folder (never the working directory)."""
    from .paths import demo_dir

    if out:
        return Path(out).expanduser()
    return demo_dir() / time.strftime("%Y%m%d-%H%M%S")


def sample() -> tuple[np.ndarray, np.ndarray]:
    """The H&E sample and its true nuclei (``H×W×3`` uint8, ``H×W`` int labels, 0 background)."""
    from ._sample_data import nuclei_he

    (image, _, _), (truth, _, _) = nuclei_he()
    return image, np.asarray(truth)


def extra_corrections() -> list[tuple[np.ndarray, np.ndarray]]:
    """``(image, mask)`` pairs standing in for corrections accepted on earlier images."""
    from .data.synthetic import make_nuclei_dataset

    return [(image, labels > 0) for image, labels in make_nuclei_dataset(EXTRA_CORRECTIONS, (256, 256), seed=11, stain="he")]


def accept_extra_corrections(store, note: str = "") -> None:
    """Accept :func:`extra_corrections` into an :class:`~napari_autosam.annotations.AnnotationStore`."""
    for i, (image, mask) in enumerate(extra_corrections()):
        store.accept(image, mask, source=f"synthetic H&E #{i}{note}")


def summary_text(summary: dict) -> str:
    """The last step's text for a summary with ``version``, ``seconds`` and the three Dice values."""
    return STEPS["result"].format(**summary)


def run_headless(folder: Path, sam_name: str = "tiny", on_progress=None) -> dict:
    """The demo's loop without napari: segment, accept, fine-tune, segment again; write the results.

    Returns a summary: ``seconds``, ``version``, ``dice_untrained``,
    ``dice_autosam``, ``dice_h`` (each against the true mask) and ``folder``.
    ``on_progress`` gets every progress event (the CLI passes its progress bar).
    """
    import torch

    from .annotations import AnnotationStore
    from .inference import Segmenter
    from .io.images import write_tiff
    from .models.store import ModelStore
    from .paths import model_store_dir
    from .progress import run
    from .sam.cache import EmbeddingCache
    from .sam.registry import identity_of, load_sam
    from .training import TrainConfig, samples_from_arrays, train

    # As the GUI's workers do: leave one core free.  Every core is often slower for these small
    # models on a laptop (and 3-4x slower on machines whose cores are hyper-threads of one).
    torch.set_num_threads(int(os.environ.get("NAPARI_AUTOSAM_THREADS") or max(1, (os.cpu_count() or 2) - 1)))
    started = time.perf_counter()
    image, truth = sample()
    sam = run(load_sam(sam_name), on_progress)
    cache = EmbeddingCache(sam, folder / "embeddings")
    segmenter = Segmenter(sam, cache=cache)
    before = run(segmenter.segment(image), on_progress)
    store = AnnotationStore(folder / "annotations")
    store.accept(image, truth > 0, source="napari-autosam sample: nuclei H&E", layer_name="nuclei H&E")
    accept_extra_corrections(store)
    images, masks, names = store.arrays()
    result = run(train(sam, samples_from_arrays(images, masks, names), config=TrainConfig(**DEMO_TRAINING),
                       store=ModelStore(model_store_dir(identity_of(sam), folder)), cache=cache), on_progress)
    segmenter.set_model(result.model)
    after = run(segmenter.segment(image), on_progress)
    seconds = time.perf_counter() - started
    for name, array in (("autosam_untrained", before.autosam_mask), ("autosam", after.autosam_mask),
                        ("h", after.h_mask), ("ground_truth", truth)):
        write_tiff(folder / f"{name}.tif", np.asarray(array))
    summary = {"seconds": seconds, "version": result.version, "dice_untrained": dice(before.autosam_mask, truth),
               "dice_autosam": dice(after.autosam_mask, truth), "dice_h": dice(after.h_mask, truth), "folder": folder}
    dices = (None, None, summary["dice_untrained"], summary["dice_autosam"], summary["dice_h"])
    captions = [caption.format(dice=dice) for caption, dice in zip(OVERVIEW_CAPTIONS, dices)]
    write_overview(folder / "overview.png", image, [truth, before.autosam_mask, after.autosam_mask, after.h_mask],
                   captions, OVERVIEW_NOTE)
    return summary


def write_overview(path: Path, image: np.ndarray, masks, captions, note: str = "") -> None:
    """A PNG strip: the image, then each mask as a coloured overlay, each panel captioned above, ``note`` below.

    Parameters
    ----------
    image : ``H×W×3`` uint8
    masks : ``H×W`` masks (anything > 0 is foreground), one panel each
    captions : one line per panel (the image's first)
    note : one line under the panels (e.g. what the colours and numbers mean)
    """
    from PIL import Image, ImageDraw, ImageFont

    panels = [np.asarray(image, np.uint8)]
    colours = ([60, 200, 60], [255, 80, 80], [80, 220, 255], [255, 160, 30])
    for i, mask in enumerate(masks):
        overlay = image.astype(np.float32).copy()
        fg = np.asarray(mask) > 0
        overlay[fg] = 0.45 * overlay[fg] + 0.55 * np.asarray(colours[i % len(colours)])
        panels.append(overlay.astype(np.uint8))
    strip = Image.fromarray(np.concatenate(panels, axis=1))
    band = 28
    canvas = Image.new("RGB", (strip.width, strip.height + band * (2 if note else 1)), "white")
    canvas.paste(strip, (0, band))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=15)
    width = image.shape[1]
    for i, caption in enumerate(captions):
        draw.text((i * width + 6, 6), caption, fill="black", font=font)
    if note:
        draw.text((6, band + strip.height + 6), note, fill="black", font=font)
    from .io.atomic import atomic_path

    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")
