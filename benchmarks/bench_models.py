"""Parameter counts and forward times of g, h and the SAM image encoder (random weights).

Usage::

    python benchmarks/bench_models.py [--device auto|cpu|cuda|mps] [--repeats 3] [--skip-vit-b]

Prints one table.  Times are the median of ``--repeats`` runs after one
warm-up, batch 1, no gradients (training costs roughly three times more).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from napari_autosam.device import autocast, pick_device
from napari_autosam.models.prompt_generator import build_prompt_generator
from napari_autosam.models.surrogate import SurrogateDecoder
from napari_autosam.sam.registry import SAM_BUILDERS, freeze


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def timed(fn, repeats: int, device: torch.device) -> float:
    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode(), autocast(device):
            fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    once()  # warm-up: allocator, kernels, thread pools
    return statistics.median(once() for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-vit-b", action="store_true", help="leave out the ViT-B encoder (10-15 s per run on a CPU)")
    args = parser.parse_args()
    device = pick_device(args.device)
    torch.manual_seed(0)
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'module':<34} {'params':>12} {'input':>22} {'forward s':>10}")

    rows = []
    for name, size in (("hardnet85", 512), ("hardnet85", 256), ("hardnet_small", 256)):
        g = build_prompt_generator(name, input_size=size).to(device).eval()
        x = torch.randn(1, 3, size, size, device=device)
        rows.append((f"g {name}", count(g), f"1x3x{size}x{size}", timed(lambda g=g, x=x: g(x), args.repeats, device)))
    full = build_prompt_generator("hardnet85")
    from napari_autosam.models.hardnet import HarDNet

    paper = count(HarDNet(full=True)) + count(full) - count(full.backbone)
    rows.append(("g hardnet85, full encoder (paper)", paper, "-", float("nan")))
    h = SurrogateDecoder().to(device).eval()
    z = torch.randn(1, 256, 64, 64, device=device)
    rows.append(("h surrogate decoder", count(h), "1x256x64x64", timed(lambda: h(z), args.repeats, device)))
    variants = ["tiny"] + ([] if args.skip_vit_b else ["vit_b"])
    for variant in variants:
        sam = freeze(SAM_BUILDERS[variant]()).to(device)
        x = torch.randn(1, 3, 1024, 1024, device=device)
        rows.append((f"SAM {variant} image encoder", count(sam.image_encoder), "1x3x1024x1024",
                     timed(lambda sam=sam, x=x: sam.image_encoder(x), args.repeats, device)))
        emb = sam.image_encoder(x) if variant == "tiny" else torch.randn(1, 256, 64, 64, device=device)
        pe, sparse = sam.prompt_encoder.get_dense_pe(), torch.zeros(1, 0, 256, device=device)
        rows.append((f"SAM {variant} mask decoder", count(sam.mask_decoder), "1x256x64x64",
                     timed(lambda sam=sam, emb=emb, pe=pe, sparse=sparse: sam.mask_decoder(emb, pe, sparse, z, False),
                           args.repeats, device)))
    for name, params, shape, seconds in rows:
        print(f"{name:<34} {params:>12,} {shape:>22} {seconds:>10.3f}")


if __name__ == "__main__":
    main()
