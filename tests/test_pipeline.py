"""Batch sizes from free GPU memory, reading ahead on a thread, compilation off by default."""

from __future__ import annotations

import threading

import pytest
import torch

from napari_autosam.inference import pipeline
from napari_autosam.inference.pipeline import ReadAhead, default_batch_size, encoder_bytes_per_image
from napari_autosam.sam import encoder_compile
from napari_autosam.sam.encoder_compile import maybe_compile


def test_read_ahead_keeps_order_and_reads_on_another_thread():
    threads = []

    def read(i):
        threads.append(threading.current_thread().name)
        return i * i

    with ReadAhead(range(5), read) as reader:
        assert list(reader) == [(i, i * i) for i in range(5)]
    assert all(name.startswith("napari-autosam-read") for name in threads)
    assert list(ReadAhead([], read)) == []


def test_read_ahead_raises_at_the_failing_item():
    def read(i):
        if i == 2:
            raise ValueError("bad tile 2")
        return i

    seen = []
    with pytest.raises(ValueError, match="bad tile 2"), ReadAhead(range(4), read) as reader:
        for item, _ in reader:
            seen.append(item)
    assert seen == [0, 1]


def test_batch_size_follows_the_free_gpu_memory(tiny_sam, monkeypatch):
    assert default_batch_size(tiny_sam) == 1  # CPU
    per_image = encoder_bytes_per_image(tiny_sam)
    assert per_image > 3 * 2 * 4096 * 4096  # the tiny SAM's global attention: 2 heads over 64×64 tokens
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(10.5 * per_image / pipeline.GPU_MEMORY_SHARE), 80 << 30))
    assert default_batch_size(tiny_sam, "cuda") == 10
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 << 20, 80 << 30))
    assert default_batch_size(tiny_sam, "cuda") == 1
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1 << 50, 1 << 50))
    assert default_batch_size(tiny_sam, "cuda") == pipeline.MAX_AUTO_BATCH
    assert default_batch_size(tiny_sam, "mps") == 4


def test_compilation_is_off_unless_asked(tiny_sam, monkeypatch):
    monkeypatch.delenv(encoder_compile.COMPILE_ENV, raising=False)
    assert not maybe_compile(tiny_sam)
    assert getattr(tiny_sam.image_encoder, "_compiled_call_impl", None) is None  # nn.Module.compile() not called
