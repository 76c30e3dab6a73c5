"""Segmentation benchmarks: speed against SAM's grid generator, memory on large tiled TIFFs, cost of g.

Usage::

    python benchmarks/bench_segmentation.py ratio     [--device cpu] [--no-instances]
    python benchmarks/bench_segmentation.py memory    [--sizes 4096 16384] [--tile 1024] [--overlap 128]
    python benchmarks/bench_segmentation.py fraction  [--device cpu] [--repeats 3]

``ratio``: one 1024² image, SAM ViT-B with random weights (no download):
AutoSAM (encoder + g + decoder + h) against segment-anything's
``SamAutomaticMaskGenerator`` with default settings on the same SAM, in the
same run; plus the re-segmentation with a cached embedding and the instance
mode.  ``memory``: each size is segmented (tiny SAM, tiled, outputs in zarr,
then written to tiled TIFFs as the CLI does) in a fresh subprocess that
reports its peak RSS and its peak traced Python/numpy memory.
``fraction``: forward times of g, SAM's mask decoder and h against the
ViT-B image encoder.  Every figure is printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_autosam.device import autocast, pick_device
from napari_autosam.progress import run


def vit_b(device) -> torch.nn.Module:
    from napari_autosam.sam.registry import SAM_BUILDERS, freeze

    torch.manual_seed(0)
    sam = freeze(SAM_BUILDERS["vit_b"]())
    sam.variant = "vit_b"
    return sam.to(device)


def test_image(size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """A fluorescence nuclei image (uint16) and its labels."""
    from napari_autosam.data.synthetic import make_nuclei_image

    return make_nuclei_image((size, size), seed=0)


def seconds(fn, device) -> tuple[float, object]:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


# --- 1. AutoSAM against the grid generator -----------------------------------------------------


def bench_ratio(args) -> None:
    from segment_anything import SamAutomaticMaskGenerator

    from napari_autosam.inference import InstanceOptions, Segmenter
    from napari_autosam.inference.testing import threshold_model
    from napari_autosam.io.normalize import to_rgb_uint8

    device = pick_device(args.device)
    sam = vit_b(device)
    image, truth = test_image()
    rgb, _ = to_rgb_uint8(image)
    print(f"device {device}, torch threads {torch.get_num_threads()}, image {image.shape} {image.dtype}, "
          f"{truth.max()} nuclei")
    seg = Segmenter(sam)  # the untrained default g (hardnet_small at 256²): the cost does not depend on training
    t_auto, result = seconds(lambda: run(seg.segment(image)), device)
    print(f"AutoSAM semantic, cold (encoder + g + decoder + h): {t_auto:8.2f} s")
    t_warm, _ = seconds(lambda: run(seg.segment(image)), device)
    print(f"AutoSAM semantic, cached embedding (g + decoder + h): {t_warm:8.2f} s")
    if not args.no_instances:
        # A known h(g(I)) that finds the nuclei, so the instance mode prompts SAM once per nucleus.
        seg.set_model(threshold_model(0.35))
        seg.instance_options = InstanceOptions(source="h")
        run(seg.segment(image))  # warm-up of the threshold model's (trivial) g
        t_inst, inst = seconds(lambda: run(seg.segment(image, mode="instances")), device)
        n = int(inst.instances.max())
        print(f"AutoSAM instances, cached embedding: {t_inst:8.2f} s for {n} objects "
              f"({1000 * t_inst / max(n, 1):.0f} ms per object, SAM's decoder once per object)")
    generator = SamAutomaticMaskGenerator(sam)
    t_grid, masks = seconds(lambda: generator.generate(rgb), device)
    print(f"SamAutomaticMaskGenerator, default settings (32×32 points): {t_grid:8.2f} s, {len(masks)} masks kept")
    # Once more after the grid, with a fresh cache, so a change of machine load during the run shows.
    t_again, _ = seconds(lambda: run(Segmenter(sam).segment(image)), device)
    print(f"AutoSAM semantic, cold, after the grid generator:    {t_again:8.2f} s")
    t_auto = (t_auto + t_again) / 2
    print(f"ratio grid / AutoSAM (cold, mean of both): {t_grid / t_auto:6.1f}×   "
          f"(grid / cached AutoSAM: {t_grid / t_warm:6.0f}×)")
    if not args.no_instances:
        print(f"ratio grid / AutoSAM instances (embedding cached, + its encoder once): "
              f"{t_grid / (t_inst + t_auto - t_warm):6.1f}×")


# --- 2. peak memory on large tiled TIFFs ---------------------------------------------------------


def write_big_tiff(path: Path, size: int, block: int = 1024) -> None:
    """A ``size²`` uint8 tiled TIFF made of flipped copies of one synthetic block, written tile by tile."""
    import tifffile

    pattern = test_image(block)[0]
    pattern = (np.clip(pattern / np.percentile(pattern, 99.5), 0, 1) * 255).astype(np.uint8)
    variants = [pattern, pattern[::-1], pattern[:, ::-1], pattern.T]

    def tiles(t=256):
        for y in range(0, size, t):
            for x in range(0, size, t):
                v = variants[((y // block) * 7 + (x // block) * 3) % 4]
                yield v[y % block : y % block + t, x % block : x % block + t]

    tifffile.imwrite(path, tiles(), shape=(size, size), dtype=np.uint8, tile=(256, 256), compression="zlib")


def memory_child(path: str, tile: int, overlap: int) -> None:
    """Segment ``path`` as the CLI does and print one JSON line of figures (runs in its own process)."""
    import resource
    import tracemalloc

    from napari_autosam.inference import Segmenter
    from napari_autosam.inference.tiling import tile_grid
    from napari_autosam.io.images import open_lazy, write_array
    from napari_autosam.sam.registry import load_sam

    sam = run(load_sam("tiny", device="cpu"))
    seg = Segmenter(sam)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    image = open_lazy(path)
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        result = run(seg.segment(image, tile=tile, overlap=overlap, store=Path(scratch) / "zarr"))
        t_segment = time.perf_counter() - start
        start = time.perf_counter()
        for name in ("autosam_mask", "h_mask"):
            write_array(Path(scratch) / f"{name}.tif", getattr(result, name))
        t_write = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1] / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tiles = len(tile_grid(image.shape, tile, overlap))
    print(json.dumps({"shape": list(image.shape), "tiles": tiles, "segment_s": t_segment, "write_s": t_write,
                      "peak_rss_mib": peak, "rss_after_model_load_mib": baseline, "traced_peak_mib": traced}))


def bench_memory(args) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = Path(tmp) / f"slide_{size}.tif"
            write_big_tiff(path, size)
            cmd = [sys.executable, __file__, "_memory_child", str(path), str(args.tile), str(args.overlap)]
            env = dict(os.environ, NAPARI_AUTOSAM_CACHE=str(Path(tmp) / "cache"))
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
            figures = json.loads(out.strip().splitlines()[-1])
            rows.append(figures)
            mp = size * size / 1e6
            print(f"{size}²: {figures['tiles']} tiles, segment {figures['segment_s']:.1f} s "
                  f"({mp / figures['segment_s']:.2f} MP/s), write TIFFs {figures['write_s']:.1f} s, "
                  f"peak RSS {figures['peak_rss_mib']:.0f} MiB (after loading the model "
                  f"{figures['rss_after_model_load_mib']:.0f} MiB), traced peak {figures['traced_peak_mib']:.0f} MiB",
                  flush=True)
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        print(f"peak RSS {b['shape'][0]}² / {a['shape'][0]}²: {b['peak_rss_mib'] / a['peak_rss_mib']:.3f}; "
              f"traced: {b['traced_peak_mib'] / max(a['traced_peak_mib'], 1e-9):.3f}")


# --- 3. g + decoder against the encoder ------------------------------------------------------------


def median_time(fn, device, repeats: int) -> float:
    def once():
        with torch.inference_mode(), autocast(device):
            return seconds(fn, device)[0]

    once()
    return statistics.median(once() for _ in range(repeats))


def bench_fraction(args) -> None:
    from napari_autosam.models.prompt_generator import build_prompt_generator
    from napari_autosam.models.surrogate import SurrogateDecoder

    device = pick_device(args.device)
    sam = vit_b(device)
    x = torch.randn(1, 3, 1024, 1024, device=device)
    t_enc = median_time(lambda: sam.image_encoder(x), device, args.repeats)
    embedding = torch.randn(1, 256, 64, 64, device=device)
    pe = sam.prompt_encoder.get_dense_pe()
    empty = torch.zeros(1, 0, 256, device=device)
    h = SurrogateDecoder().to(device).eval()
    print(f"device {device}, torch threads {torch.get_num_threads()}; ViT-B image encoder at 1024²: {t_enc:.2f} s")
    print(f"{'g':<22} {'g s':>7} {'decoder s':>10} {'h s':>7} {'(g+decoder)/encoder':>20}")
    for name, size in (("hardnet_small", 256), ("hardnet85", 256), ("hardnet85", 512)):
        torch.manual_seed(0)
        g = build_prompt_generator(name, input_size=size).to(device).eval()
        gx = torch.randn(1, 3, size, size, device=device)
        t_g = median_time(lambda g=g, gx=gx: g(gx), device, args.repeats)
        prompt = torch.tanh(torch.randn(1, 256, 64, 64, device=device))  # g's range
        t_dec = median_time(lambda prompt=prompt: sam.mask_decoder(image_embeddings=embedding, image_pe=pe, sparse_prompt_embeddings=empty,
                                                     dense_prompt_embeddings=prompt, multimask_output=False),
                            device, args.repeats)
        t_h = median_time(lambda prompt=prompt: h(prompt), device, args.repeats)
        print(f"{name + ' @' + str(size):<22} {t_g:7.3f} {t_dec:10.3f} {t_h:7.3f} {(t_g + t_dec) / t_enc:19.1%}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_memory_child":
        memory_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="bench", required=True)
    ratio = sub.add_parser("ratio", help="AutoSAM against SamAutomaticMaskGenerator, ViT-B, 1024²")
    ratio.add_argument("--device", default="cpu")
    ratio.add_argument("--no-instances", action="store_true")
    memory = sub.add_parser("memory", help="peak memory and throughput on large tiled TIFFs (tiny SAM)")
    memory.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384])
    memory.add_argument("--tile", type=int, default=1024)
    memory.add_argument("--overlap", type=int, default=128)
    fraction = sub.add_parser("fraction", help="g + decoder time as a fraction of the ViT-B encoder's")
    fraction.add_argument("--device", default="cpu")
    fraction.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    {"ratio": bench_ratio, "memory": bench_memory, "fraction": bench_fraction}[args.bench](args)


if __name__ == "__main__":
    main()
