"""Pick the compute device and the mixed-precision policy for it."""

from __future__ import annotations

import contextlib
import os

import torch

#: Environment variable that overrides automatic device selection.
DEVICE_ENV = "NAPARI_AUTOSAM_DEVICE"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def available_devices() -> list[str]:
    """Names of the devices usable here, best first (always ends with ``"cpu"``)."""
    names = []
    if torch.cuda.is_available():
        names.append("cuda")
    if _mps_available():
        names.append("mps")
    names.append("cpu")
    return names


def pick_device(preferred: str | torch.device | None = None) -> torch.device:
    """Return the device to compute on.

    ``None`` or ``"auto"`` picks CUDA, then Apple MPS, then the CPU (the
    ``NAPARI_AUTOSAM_DEVICE`` environment variable wins over that order).
    An explicit name that is not available raises ``ValueError`` naming
    what is available, rather than failing later inside a kernel.
    """
    if isinstance(preferred, torch.device):
        preferred = str(preferred)
    if preferred in (None, "", "auto"):
        preferred = os.environ.get(DEVICE_ENV) or available_devices()[0]
    device = torch.device(preferred)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"CUDA was requested but is not available here; available: {available_devices()}")
    if device.type == "mps" and not _mps_available():
        raise ValueError(f"Apple MPS was requested but is not available here; available: {available_devices()}")
    if device.type not in ("cuda", "mps", "cpu"):
        raise ValueError(f"Unsupported device {preferred!r}; use one of {available_devices()} or 'auto'")
    return device


def autocast(device: torch.device | str):
    """Mixed precision where it is safe: bfloat16 (or float16) autocast on CUDA.

    On CPU and MPS this is a no-op context: CPU autocast is slower than
    float32 for these convolutions, and MPS autocast is still incomplete.
    Losses should be computed outside this context in float32.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def needs_grad_scaler(device: torch.device | str) -> bool:
    """True when autocast on ``device`` uses float16, which needs loss scaling."""
    device = torch.device(device)
    return device.type == "cuda" and not torch.cuda.is_bf16_supported()
