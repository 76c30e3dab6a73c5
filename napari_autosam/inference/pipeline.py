"""Keeping an accelerator busy: batch sizes from free memory, reading ahead, optional compilation.

* :func:`default_batch_size`: tiles or slices per encoder call.  1 on a CPU
  (a bigger batch is not faster there and holds more memory); on CUDA as
  many as fit in a share of the *free* GPU memory (``torch.cuda.mem_get_info``),
  from an estimate of one 1024² image's activations for the SAM's width and
  heads; 4 on Apple MPS (no free-memory query there).
* :class:`ReadAhead`: the windows of the next batch are read and converted
  to RGB on a background thread while the current batch is computed, so a
  slide's decoding overlaps the encoder (the encoder's input is pinned and
  copied asynchronously, see :func:`~napari_autosam.sam.embedding.embed_images`).
* optional compilation of SAM's image encoder lives with the encoder
  (:func:`napari_autosam.sam.encoder_compile.maybe_compile`).

These paths were written for CUDA and MPS but, in this project's sessions so
far, only the CPU ones have run; ``benchmarks/bench_gpu.py`` measures them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Self, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

#: Share of the free GPU memory that encoder batches may take.
GPU_MEMORY_SHARE = 0.6
#: Largest batch ever chosen automatically.
MAX_AUTO_BATCH = 16


def encoder_bytes_per_image(sam, element_size: int = 2) -> int:
    """Rough peak activation memory of one 1024² image in SAM's image encoder, in bytes.

    The global-attention blocks dominate: the ``heads × 4096 × 4096``
    relative-position bias (and the attention it feeds) plus the token
    activations of width ``embed_dim`` through the MLP (4× wider).
    """
    encoder = sam.image_encoder
    first = encoder.blocks[0]
    heads = int(first.attn.num_heads)
    width = int(encoder.patch_embed.proj.out_channels)
    tokens = (encoder.img_size // encoder.patch_embed.proj.kernel_size[0]) ** 2
    attention = 3 * heads * tokens * tokens * element_size
    activations = 16 * tokens * width * element_size
    return attention + activations


def default_batch_size(sam, device: torch.device | str | None = None) -> int:
    """Tiles or slices per batch for ``sam`` on ``device`` (default: the SAM's own device)."""
    device = torch.device(device) if device is not None else next(sam.parameters()).device
    if device.type == "cpu":
        return 1
    if device.type == "cuda":
        try:
            free, _total = torch.cuda.mem_get_info(device)
        except (RuntimeError, AssertionError):
            return 4
        return max(1, min(MAX_AUTO_BATCH, int(free * GPU_MEMORY_SHARE // encoder_bytes_per_image(sam))))
    return 4


class ReadAhead:
    """Run ``read(item)`` for the next item on a background thread while the caller uses this one.

    Iterating yields ``(item, read(item))`` in order; at most one read runs
    ahead.  ``close()`` (or leaving a ``with`` block) waits for a read in
    flight and stops the thread.  Exceptions of ``read`` surface in the
    iteration, at the item that raised them.
    """

    def __init__(self, items: Sequence[T], read: Callable[[T], R]) -> None:
        self.items = list(items)
        self.read = read
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-autosam-read")

    def __iter__(self) -> Iterator[tuple[T, R]]:
        pending: Future | None = self._pool.submit(self.read, self.items[0]) if self.items else None
        for i, item in enumerate(self.items):
            value = pending.result()
            pending = self._pool.submit(self.read, self.items[i + 1]) if i + 1 < len(self.items) else None
            yield item, value

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

