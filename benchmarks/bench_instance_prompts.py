"""Instance prompts on real nuclei: box + point against box + point + mask, and a watershed baseline.

Usage::

    pip download --no-deps stardist -d /tmp/sd      # once: the wheel ships a labelled nuclei image
    python benchmarks/bench_instance_prompts.py --wheel /tmp/sd/stardist-*.whl [--sam vit_b] [--time-limit 170]

Data: ``stardist/data/images/img2d.tif`` and ``mask2d.tif`` from the stardist
wheel (BSD-3-Clause; a 512² fluorescence image of nuclei with their
instance labels), read from the wheel at run time, never committed.  The
left half trains g (the CLI's settings), the right half is the test image.
On the test half it prints, for each prompt set of the self-prompted
instance mode and for a baseline with no learning (Otsu threshold, then a
watershed of the distance transform), the F1 score of instances matched at
IoU > 0.5 and the panoptic quality (PQ: the matched IoUs summed, over
TP + FP/2 + FN/2).  With the tiny SAM (random weights) the decoder rarely
agrees with g's objects, so the figures measure the pipeline, not SAM:
run it with a real SAM to choose the default.
"""

from __future__ import annotations

import argparse
import io
import os
import time
import zipfile


def _wheel_images(wheel: str):
    import numpy as np
    import tifffile

    with zipfile.ZipFile(wheel) as archive:
        read = lambda name: tifffile.imread(io.BytesIO(archive.read(f"stardist/data/images/{name}")))  # noqa: E731
        return np.asarray(read("img2d.tif")), np.asarray(read("mask2d.tif"))


def match_instances(pred, truth, threshold: float = 0.5) -> tuple[int, int, int, float]:
    """``(TP, FP, FN, sum of matched IoUs)`` of two label images (IoU > 0.5 makes a match unique)."""
    import numpy as np

    pairs = np.stack([truth.ravel(), pred.ravel()], 1)
    pairs = pairs[(pairs[:, 0] > 0) & (pairs[:, 1] > 0)]
    keys, overlap = np.unique(pairs, axis=0, return_counts=True)
    area_t = np.bincount(truth.ravel())
    area_p = np.bincount(pred.ravel())
    iou = overlap / (area_t[keys[:, 0]] + area_p[keys[:, 1]] - overlap)
    good = iou > threshold
    tp = int(good.sum())
    n_true, n_pred = len(np.unique(truth)) - (truth == 0).any(), len(np.unique(pred)) - (pred == 0).any()
    return tp, int(n_pred - tp), int(n_true - tp), float(iou[good].sum())


def scores(pred, truth) -> tuple[float, float]:
    """F1 at IoU 0.5 and panoptic quality."""
    tp, fp, fn, iou_sum = match_instances(pred, truth)
    f1 = 2 * tp / max(2 * tp + fp + fn, 1)
    pq = iou_sum / max(tp + fp / 2 + fn / 2, 1e-9)
    return f1, pq


def watershed_baseline(image):
    """Otsu threshold, then a watershed of the distance transform seeded at its smoothed maxima."""
    import numpy as np
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.segmentation import watershed

    smooth = gaussian(image.astype(np.float32), 1.0)
    mask = smooth > threshold_otsu(smooth)
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(gaussian(distance, 1.0), min_distance=4, labels=ndi.label(mask)[0])
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=mask)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", required=True, help="the stardist wheel (pip download --no-deps stardist)")
    parser.add_argument("--sam", default="tiny", help="SAM name or file (default tiny: measures the pipeline only)")
    parser.add_argument("--time-limit", type=float, default=None, help="training seconds (default: the CLI's)")
    args = parser.parse_args(argv)
    os.environ.setdefault("NAPARI_AUTOSAM_DEVICE", "cpu")

    import tempfile

    from napari_autosam.inference import Segmenter
    from napari_autosam.inference.instances import InstanceOptions
    from napari_autosam.jobs.defaults import DEFAULT_TIME_LIMIT
    from napari_autosam.progress import run
    from napari_autosam.sam.registry import load_sam
    from napari_autosam.training import TrainConfig, samples_from_arrays, train

    image, labels = _wheel_images(args.wheel)
    half = image.shape[1] // 2
    train_image, train_labels = image[:, :half], labels[:, :half]
    test_image, test_labels = image[:, half:], labels[:, half:]
    sam = run(load_sam(args.sam))
    limit = DEFAULT_TIME_LIMIT if args.time_limit is None else (args.time_limit or None)
    load0, wall = os.getloadavg()[0], time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = run(train(sam, samples_from_arrays([train_image], [train_labels > 0]), config=TrainConfig(
            time_limit=limit), out=os.path.join(tmp, "m.safetensors")))
    trained = time.perf_counter() - wall
    rows = [("watershed on Otsu threshold (no learning)", scores(watershed_baseline(test_image), test_labels))]
    segmenter = Segmenter(sam, result.model)
    for name, use_mask in (("box + point", False), ("box + point + mask", True)):
        out = run(segmenter.segment(test_image, mode="instances", instance_options=InstanceOptions(
            use_mask_prompt=use_mask)))
        rows.append((f"AutoSAM instances, {name}", scores(out.instances, test_labels)))
    print(f"stardist img2d.tif: train on the left half, test on the right half ({test_image.shape[0]}×{half}, "
          f"{len(set(test_labels.ravel())) - 1} nuclei); SAM {args.sam}; training {trained:.0f} s; "
          f"load average {load0:.1f} → {os.getloadavg()[0]:.1f}")
    print(f"{'method':<45} {'F1@0.5':>7} {'PQ':>7}")
    for name, (f1, pq) in rows:
        print(f"{name:<45} {f1:>7.3f} {pq:>7.3f}")


if __name__ == "__main__":
    main()
