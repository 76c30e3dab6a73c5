"""The precision of SAM's image encoder (auto / fp32 / bf16) and the fused attention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_autosam import device as device_mod
from napari_autosam.device import PRECISION_ENV, module_precision, resolve_precision, set_precision
from napari_autosam.sam.attention import use_fast_attention, use_stock_attention, uses_fast_attention


@pytest.fixture(autouse=True)
def _no_precision_env(monkeypatch):
    monkeypatch.delenv(PRECISION_ENV, raising=False)


def test_auto_uses_bf16_only_on_cpus_that_have_it(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("cpu").dtype is torch.bfloat16
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)
    chosen = resolve_precision("cpu")
    assert chosen.dtype is None and chosen.name == "fp32" and "AVX-512 BF16" in chosen.reason
    with chosen.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_flag_and_environment_force_either(monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("cpu", "fp32").dtype is None
    monkeypatch.setenv(PRECISION_ENV, "fp32")
    assert resolve_precision("cpu").dtype is None
    assert resolve_precision("cpu", "bf16").dtype is torch.bfloat16  # the argument wins over the environment
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setenv(PRECISION_ENV, "BF16")
    forced = resolve_precision("cpu")
    assert forced.dtype is torch.bfloat16 and "emulated" in forced.reason
    with forced.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    monkeypatch.setenv(PRECISION_ENV, "half")
    with pytest.raises(ValueError, match=f"{PRECISION_ENV}='half'.*auto, fp32, bf16"):
        resolve_precision("cpu")
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("cpu", "fp8")


def test_unsupported_devices_fall_back_with_a_reason(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    old_gpu = resolve_precision("cuda", "bf16")
    assert old_gpu.dtype is torch.float16 and "no bfloat16" in old_gpu.reason
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("cuda").dtype is torch.bfloat16
    mps = resolve_precision("mps", "bf16")
    assert mps.dtype is torch.float16 and "MPS" in mps.reason
    assert resolve_precision("mps", "fp32").dtype is None


def test_native_bf16_detection_reads_the_cpu_flags(monkeypatch):
    device_mod.cpu_has_native_bf16.cache_clear()
    try:
        monkeypatch.setattr(device_mod.platform, "machine", lambda: "x86_64")
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
        monkeypatch.setattr(device_mod, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
        assert device_mod.cpu_has_native_bf16()
        device_mod.cpu_has_native_bf16.cache_clear()
        monkeypatch.setattr(device_mod, "_cpu_flags", lambda: {"avx512f", "avx512_vnni"})
        assert not device_mod.cpu_has_native_bf16()
        device_mod.cpu_has_native_bf16.cache_clear()
        monkeypatch.setattr(device_mod.platform, "machine", lambda: "arm64")
        monkeypatch.setattr(device_mod, "_cpu_flags", lambda: {"bf16"})
        assert not device_mod.cpu_has_native_bf16()  # ARM / Apple: not trusted unless known
    finally:
        device_mod.cpu_has_native_bf16.cache_clear()


def test_a_sam_carries_its_setting_to_the_encoder(tiny_sam, monkeypatch):
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)
    try:
        set_precision(tiny_sam, "bf16")
        assert module_precision(tiny_sam).dtype is torch.bfloat16
        with pytest.raises(ValueError, match="precision must be one of"):
            set_precision(tiny_sam, "float8")
    finally:
        set_precision(tiny_sam, None)
    assert module_precision(tiny_sam).dtype is None


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2 * float((a & b).sum()) / max(1, int(a.sum() + b.sum()))


def test_bf16_masks_agree_with_fp32_on_the_tiny_sam(tiny_sam):
    from napari_autosam.data.synthetic import make_nuclei_image
    from napari_autosam.inference import Segmenter
    from napari_autosam.io.normalize import to_rgb_uint8
    from napari_autosam.progress import run
    from napari_autosam.sam.embedding import embed_images

    image = make_nuclei_image((192, 256), seed=3)[0]
    rgb = to_rgb_uint8(image)[0]
    fp32 = run(embed_images(tiny_sam, [rgb], precision="fp32"))
    bf16 = run(embed_images(tiny_sam, [rgb], precision="bf16"))
    assert bf16.dtype == torch.float32
    relative = float((fp32 - bf16).norm() / fp32.norm())
    assert 0 < relative < 2e-2  # bf16 rounding shows, but only at the percent level
    masks = {}
    try:
        for name in ("fp32", "bf16"):
            set_precision(tiny_sam, name)
            masks[name] = run(Segmenter(tiny_sam).segment(image)).autosam_mask
    finally:
        set_precision(tiny_sam, None)
    assert masks["fp32"].any()
    assert _dice(masks["fp32"], masks["bf16"]) > 0.99


def test_fused_attention_equals_the_stock_one_on_the_tiny_encoder(tiny_sam):
    torch.manual_seed(1)
    x = torch.randn(1, 3, 1024, 1024)
    # The tiny SAM's relative-position tables are zero-initialised: make them count.
    tables = {name: p.detach().clone() for name, p in tiny_sam.image_encoder.named_parameters() if "rel_pos" in name}
    try:
        for name, p in tiny_sam.image_encoder.named_parameters():
            if "rel_pos" in name:
                p.data.normal_(0, 0.5)
        with torch.inference_mode():
            use_stock_attention(tiny_sam)
            assert not uses_fast_attention(tiny_sam)
            stock = tiny_sam.image_encoder(x)
            assert use_fast_attention(tiny_sam) and uses_fast_attention(tiny_sam)
            fast = tiny_sam.image_encoder(x)
    finally:
        for name, p in tiny_sam.image_encoder.named_parameters():
            if name in tables:
                p.data.copy_(tables[name])
    relative = float((fast - stock).norm() / stock.norm())
    assert relative < 1e-5
    assert not any("forward" in k for k in tiny_sam.state_dict())  # the weights are untouched


def test_the_environment_keeps_the_stock_attention(tiny_sam, monkeypatch):
    monkeypatch.setenv("NAPARI_AUTOSAM_SDPA", "0")
    assert not use_fast_attention(tiny_sam) and not uses_fast_attention(tiny_sam)
    monkeypatch.delenv("NAPARI_AUTOSAM_SDPA")
    assert use_fast_attention(tiny_sam)


def test_cli_precision_flag(tmp_path, capsys, monkeypatch):
    import tifffile

    from napari_autosam.cli import main
    from napari_autosam.data.synthetic import make_nuclei_image

    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)
    path = tmp_path / "nuclei.tif"
    tifffile.imwrite(path, make_nuclei_image((64, 80), seed=2)[0])
    argv = ["segment", str(path), "--out", str(tmp_path / "out"), "--sam", "tiny", "--device", "cpu"]
    assert main([*argv, "--precision", "bf16"]) == 0
    assert "precision bf16" in capsys.readouterr().err and (tmp_path / "out" / "nuclei_autosam.tif").exists()
    with pytest.raises(SystemExit):
        main([*argv, "--precision", "fp16"])
    assert "invalid choice" in capsys.readouterr().err


def test_chunked_global_attention_equals_the_whole_bias_and_keeps_gradients(tiny_sam, monkeypatch):
    from napari_autosam.sam import attention

    torch.manual_seed(2)
    block = next(m for m in tiny_sam.image_encoder.modules()
                 if isinstance(m, attention.Attention) and m.use_rel_pos)
    x = torch.randn(1, 9, 7, block.qkv.in_features)  # 63 tokens: the last chunk is a short one
    rel = {name: p.detach().clone() for name, p in block.named_parameters() if "rel_pos" in name}
    try:
        for name, p in block.named_parameters():
            if "rel_pos" in name:
                p.data.normal_(0, 0.5)
        with torch.no_grad():
            stock = Attention_forward_stock(block, x)
            whole = attention._sdpa_forward(block, x)  # 63 tokens fit the default budget: one bias
            monkeypatch.setattr(attention, "BIAS_BUDGET_BYTES", 1)  # one query row per chunk
            assert attention.chunk_rows(1, block.num_heads, 63, 4, 1) == 1
            chunked = attention._sdpa_forward(block, x)
            monkeypatch.setattr(attention, "BIAS_BUDGET_BYTES", 10 * block.num_heads * 63 * 4)  # 10 rows
            tens = attention._sdpa_forward(block, x)
        for out in (whole, chunked, tens):
            assert float((out - stock).norm() / stock.norm()) < 1e-5
        # With gradients (still the 10-row budget) the whole bias is formed, so autograd works.
        grads = []
        for forward in (Attention_forward_stock, attention._sdpa_forward):
            x_grad = x.clone().requires_grad_(True)
            forward(block, x_grad).square().sum().backward()
            grads.append(x_grad.grad)
        assert float((grads[1] - grads[0]).norm() / grads[0].norm()) < 1e-5
    finally:
        for name, p in block.named_parameters():
            if name in rel:
                p.data.copy_(rel[name])


def Attention_forward_stock(block, x):
    from segment_anything.modeling.image_encoder import Attention

    return Attention.forward(block, x)


def test_training_steps_follow_the_encoder_precision_on_cpus_with_native_bf16(monkeypatch, tiny_sam):
    """g's and h's CPU steps run in bfloat16 only where the CPU has it natively and the SAM's precision says bf16."""
    from napari_autosam.device import training_autocast

    def product_dtype(context):
        with context:
            return (torch.ones(2, 2) @ torch.ones(2, 2)).dtype

    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    assert product_dtype(training_autocast("cpu")) == torch.bfloat16  # auto
    assert product_dtype(training_autocast("cpu", enabled=False)) == torch.float32
    set_precision(tiny_sam, "fp32")
    try:
        assert product_dtype(training_autocast("cpu", module_precision(tiny_sam))) == torch.float32
        set_precision(tiny_sam, "bf16")
        assert product_dtype(training_autocast("cpu", module_precision(tiny_sam))) == torch.bfloat16
        monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)  # emulated bf16 is slower: float32
        assert product_dtype(training_autocast("cpu", module_precision(tiny_sam))) == torch.float32
    finally:
        set_precision(tiny_sam, None)


def test_a_new_g_on_a_cpu_with_bf16_steps_reads_512_else_256(monkeypatch, tiny_sam):
    """The CPU default input side follows the step precision; explicit sizes, warm starts and class models keep theirs."""
    from napari_autosam.training import TrainConfig
    from napari_autosam.training.engine import cpu_input_size

    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: True)
    assert cpu_input_size(TrainConfig(), tiny_sam, "cpu", warm_start=False).input_size == 512
    assert cpu_input_size(TrainConfig(input_size=128), tiny_sam, "cpu", warm_start=False).input_size == 128
    assert cpu_input_size(TrainConfig(), tiny_sam, "cpu", warm_start=True).input_size is None  # the model's own
    classes = TrainConfig(classes=({"id": 1, "name": "a"}, {"id": 2, "name": "b"}))
    assert cpu_input_size(classes, tiny_sam, "cpu", warm_start=False).input_size is None  # float32 steps: 256
    set_precision(tiny_sam, "fp32")
    try:
        assert cpu_input_size(TrainConfig(), tiny_sam, "cpu", warm_start=False).input_size == 256
    finally:
        set_precision(tiny_sam, None)
    monkeypatch.setattr(device_mod, "cpu_has_native_bf16", lambda: False)
    assert cpu_input_size(TrainConfig(), tiny_sam, "cpu", warm_start=False).input_size == 256
