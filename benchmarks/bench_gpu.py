"""Throughput on the best device: tiles/s per SAM variant, per-stage times, peak GPU memory, fine-tuning steps/s.

Usage::

    python benchmarks/bench_gpu.py                 # CUDA/MPS: vit_b, vit_l, vit_h on an 8192² slide
    python benchmarks/bench_gpu.py --quick         # any device, CI-sized: tiny SAM on a 2048² slide
    python benchmarks/bench_gpu.py --sams vit_b --size 4096 --device cpu

For each SAM (random weights in the official layout, nothing downloaded):

1. **end to end**: ``Segmenter.segment`` of a ``size²`` uint8 tiled TIFF read
   lazily, outputs in an on-disk zarr store, then written to tiled TIFFs as
   the CLI does; tiles/s over the whole run (reading and writing included);
2. **stages**: the same tiles once more, stage by stage with the device
   synchronised in between: read (TIFF window → RGB), encode (SAM's image
   encoder at the resolved precision), g, decoder (SAM's mask decoder + h),
   write (blending into the zarr store), in ms per tile;
3. **peak GPU memory** (CUDA: ``max_memory_allocated``);
4. **fine-tuning**: steps/s of one cached training step (g forward,
   frozen decoder, loss, backward, Adam) and of a step that re-encodes.

Nothing is asserted; every figure is printed with the device, precision,
batch size and load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from napari_autosam.device import module_precision, pick_device, set_precision
from napari_autosam.progress import run


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def build(name: str, device: torch.device):
    from napari_autosam.sam.registry import SAM_BUILDERS, freeze, load_sam

    if name == "tiny":
        return run(load_sam("tiny", device=device))
    torch.manual_seed(0)
    sam = freeze(SAM_BUILDERS[name]())
    sam.variant = name
    return sam.to(device)


def end_to_end(seg, path: Path, scratch: Path, tile: int) -> float:
    """Seconds to segment the slide tile by tile and write its two mask TIFFs, as the CLI does."""
    from napari_autosam.io.images import open_lazy, write_array

    image = open_lazy(path)
    start = time.perf_counter()
    result = run(seg.segment(image, tile=tile, store=scratch / "zarr"))
    for name in ("autosam_mask", "h_mask"):
        write_array(scratch / f"{name}.tif", getattr(result, name))
    sync(seg.device)
    elapsed = time.perf_counter() - start
    shutil.rmtree(scratch / "zarr", ignore_errors=True)
    return elapsed


def stage_times(seg, path: Path, scratch: Path, tile: int, limit: int) -> dict[str, float]:
    """Milliseconds per tile of each stage, over the first ``limit`` tiles, synchronised between stages."""
    from napari_autosam.inference.inputs import image_layout
    from napari_autosam.inference.outputs import Accumulator
    from napari_autosam.inference.segmenter import whole_image_normalization
    from napari_autosam.inference.tiling import segmentation_tiles
    from napari_autosam.io.images import open_lazy
    from napari_autosam.sam.embedding import (
        Geometry,
        embed_images,
        frame_to_original,
        prepare_image,
    )

    image = open_lazy(path)
    layout = image_layout(image, None)
    norm = whole_image_normalization(image, layout)
    tiles = segmentation_tiles(layout.plane_shape, tile)[:limit]
    out = Accumulator(layout.output_shape, with_h=True, with_instances=False, store=scratch / "stages")
    totals = dict.fromkeys(("read", "encode", "g", "decoder", "write"), 0.0)
    device, model = seg.device, seg.model
    for start in range(0, len(tiles), seg.batch_size):
        batch = [(0, t) for t in tiles[start : start + seg.batch_size]]
        marks = [time.perf_counter()]
        rgbs = seg.read_batch(image, layout, batch, norm, None)
        marks.append(time.perf_counter())
        embeddings = run(embed_images(seg.sam, rgbs, batch_size=len(rgbs))).to(device)
        sync(device)
        marks.append(time.perf_counter())
        with torch.inference_mode():
            g_input = torch.cat([prepare_image(rgb, model.input_size)[0] for rgb in rgbs]).to(device)
            prompt = model.prompt_generator(g_input)
            sync(device)
            marks.append(time.perf_counter())
            logits = model.decode(embeddings, prompt.to(embeddings.dtype))
            h_logits = model.surrogate(prompt) if model.surrogate is not None else None
            sync(device)
        marks.append(time.perf_counter())
        for i, (z, t) in enumerate(batch):  # back to the window's pixels, off the device, into the store
            geometry = Geometry(*rgbs[i].shape[:2])
            autosam = torch.sigmoid(frame_to_original(logits[i : i + 1].float(), geometry))[0, 0].cpu().numpy()
            h = torch.sigmoid(frame_to_original(h_logits[i : i + 1].float(), geometry))[0, 0].cpu().numpy()
            out.add(z, t.slices, t.weight(), autosam, h)
        marks.append(time.perf_counter())
        for key, a, b in zip(totals, marks, marks[1:]):
            totals[key] += b - a
    shutil.rmtree(scratch / "stages", ignore_errors=True)
    return {k: 1000 * v / max(1, len(tiles)) for k, v in totals.items()}


def fine_tuning(sam, device: torch.device, repeats: int) -> tuple[float, float]:
    """(cached steps/s, re-encoding steps/s) of one-image training steps."""
    from bench_training import step_times

    from napari_autosam.data.synthetic import make_nuclei_dataset
    from napari_autosam.training import TrainConfig, samples_from_arrays

    pairs = make_nuclei_dataset(2, (256, 256), seed=0, stain="he")
    samples = samples_from_arrays([p[0] for p in pairs], [p[1] for p in pairs])
    t = step_times(sam, samples, TrainConfig(), device, repeats)
    return 1 / t["cached"], 1 / t["reencoding"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="CI-sized: tiny SAM, 2048² slide, few repeats")
    parser.add_argument("--sams", default=None, help="comma-separated variants (default: vit_b,vit_l,vit_h; --quick: tiny)")
    parser.add_argument("--size", type=int, default=None, help="slide side in pixels (default 8192; --quick: 2048)")
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--stage-tiles", type=int, default=None, help="tiles timed stage by stage (default 16; --quick 4)")
    parser.add_argument("--precision", default=None, choices=("auto", "fp32", "bf16"))
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-training", action="store_true")
    args = parser.parse_args()
    from bench_segmentation import write_big_tiff

    from napari_autosam.inference import Segmenter
    from napari_autosam.inference.tiling import segmentation_tiles

    device = pick_device(None if args.device == "auto" else args.device)
    sams = (args.sams or ("tiny" if args.quick else "vit_b,vit_l,vit_h")).split(",")
    size = args.size or (2048 if args.quick else 8192)
    stage_tiles = args.stage_tiles or (4 if args.quick else 16)
    repeats = 1 if args.quick else args.repeats
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    print(f"device {name}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f}, slide {size}², tile {args.tile}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        slide = tmp / "slide.tif"
        write_big_tiff(slide, size)
        for variant in sams:
            sam = set_precision(build(variant, device), args.precision)
            seg = Segmenter(sam, batch_size=args.batch_size)
            tiles = len(segmentation_tiles((size, size), args.tile))
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            run(seg.segment(np.zeros((256, 256), np.uint8)))  # warm-up (kernels, allocator)
            elapsed = end_to_end(seg, slide, tmp, args.tile)
            peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if device.type == "cuda" else "n/a"
            stages = stage_times(seg, slide, tmp, args.tile, stage_tiles)
            print(f"{variant}: precision {module_precision(sam).name}, batch {seg.batch_size}: {tiles} tiles in "
                  f"{elapsed:.1f} s = {tiles / elapsed:.2f} tiles/s end to end; peak GPU memory {peak}; "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
            print("   ms per tile: " + ", ".join(f"{k} {v:.0f}" for k, v in stages.items()), flush=True)
            if not args.no_training:
                cached, reencoding = fine_tuning(sam, device, repeats)
                print(f"   fine-tuning: {cached:.2f} cached steps/s, {reencoding:.3f} re-encoding steps/s "
                      f"(ratio {cached / reencoding:.1f}×)", flush=True)
            del seg, sam
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
