"""Pick the compute device and the mixed-precision policy for it."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
from dataclasses import dataclass

import torch

#: Environment variable that overrides automatic device selection.
DEVICE_ENV = "NAPARI_AUTOSAM_DEVICE"
#: Environment variable that sets the precision of SAM's image encoder (auto, fp32, bf16).
PRECISION_ENV = "NAPARI_AUTOSAM_PRECISION"
#: The precision settings: auto (bf16 where the hardware runs it natively), fp32, bf16.
PRECISIONS = ("auto", "fp32", "bf16")


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


def autocast(device: torch.device | str, precision: Precision | str | None = None):
    """An autocast context for ``device``.

    Without ``precision`` this keeps the long-standing policy for g, the
    decoder and training: bfloat16 (or float16) autocast on CUDA, a no-op
    context on the CPU and MPS.  With ``precision`` (a :class:`Precision`, or
    ``"auto"``/``"fp32"``/``"bf16"`` resolved by :func:`resolve_precision`)
    it is that precision's context, e.g. for SAM's image encoder.
    Losses should be computed outside this context in float32.
    """
    device = torch.device(device)
    if precision is not None:
        chosen = precision if isinstance(precision, Precision) else resolve_precision(device, precision)
        return chosen.autocast()
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def training_autocast(device: torch.device | str, encoder: Precision | None = None, *, enabled: bool = True):
    """The autocast context of a training step of g or h on ``device``.

    CUDA: as :func:`autocast` (bfloat16, or float16 with loss scaling).  CPU:
    bfloat16 when ``encoder`` (the SAM encoder's resolved precision, which
    ``--precision`` and ``NAPARI_AUTOSAM_PRECISION`` set; ``auto`` when None)
    is bfloat16 *and* the CPU computes it natively; float32 otherwise, and
    on MPS.  On a 2-core AVX-512 BF16 CPU a g step took half the CPU time
    at the same held-out Dice (docs/training.md).  Losses stay float32.
    """
    device = torch.device(device)
    if not enabled:
        return contextlib.nullcontext()
    if device.type == "cpu":
        if cpu_steps_in_bf16(encoder):
            return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()
    return autocast(device)


def cpu_steps_in_bf16(encoder: Precision | None = None) -> bool:
    """Whether training steps on this CPU run in bfloat16: the encoder's precision (``auto`` when None) is
    bfloat16 and the CPU computes it natively."""
    chosen = encoder if encoder is not None else resolve_precision("cpu")
    return chosen.dtype is torch.bfloat16 and cpu_has_native_bf16()


def needs_grad_scaler(device: torch.device | str) -> bool:
    """True when autocast on ``device`` uses float16, which needs loss scaling."""
    device = torch.device(device)
    return device.type == "cuda" and not torch.cuda.is_bf16_supported()


# --- precision of SAM's image encoder ---------------------------------------------------------


@dataclass(frozen=True)
class Precision:
    """The resolved precision for one device type.

    Attributes
    ----------
    dtype : torch.dtype or None
        The autocast dtype (``torch.bfloat16`` / ``torch.float16``), None for plain float32.
    device_type : str
        ``"cuda"``, ``"mps"`` or ``"cpu"``.
    reason : str
        One line saying why this precision was chosen (shown to users on fall-backs).
    """

    dtype: torch.dtype | None
    device_type: str
    reason: str

    @property
    def name(self) -> str:
        """``"fp32"``, ``"bf16"`` or ``"fp16"``."""
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self):
        """The autocast context of this precision (a no-op context for float32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (x86 AVX-512 BF16 or AMX).

    Elsewhere (x86 without those instructions, ARM, macOS) oneDNN emulates
    bfloat16 through float32 and autocast is 2-3× *slower* than float32
    (measured on an AVX-512 CPU without BF16), so the answer there is False.
    """
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    capability = str(getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()).upper()
    if "AMX" in capability or "BF16" in capability:
        return True
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def _requested(requested: str | None) -> str:
    if requested in (None, ""):
        env = os.environ.get(PRECISION_ENV, "").strip().lower()
        if env and env not in PRECISIONS:
            raise ValueError(f"{PRECISION_ENV}={env!r} is not a precision; use one of {', '.join(PRECISIONS)}")
        return env or "auto"
    text = str(requested).strip().lower()
    if text not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    return text


def resolve_precision(device: torch.device | str, requested: str | None = None) -> Precision:
    """The precision for SAM's image encoder on ``device``.

    ``requested`` is ``"auto"``, ``"fp32"`` or ``"bf16"``; None reads the
    ``NAPARI_AUTOSAM_PRECISION`` environment variable (default ``auto``).

    * ``auto``: bfloat16 autocast on CUDA GPUs that support it (else
      float16), float16 on Apple MPS, bfloat16 on CPUs with AVX-512 BF16 or
      AMX, float32 on other CPUs;
    * ``fp32``: float32 everywhere;
    * ``bf16``: bfloat16 where the device has it; a CUDA GPU without it or
      MPS falls back to float16, and a CPU without native bfloat16 runs it
      emulated (correct but slower), each with the reason stated.
    """
    device = torch.device(device)
    setting = _requested(requested)
    kind = device.type
    if setting == "fp32":
        return Precision(None, kind, "float32 was requested")
    if kind == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return Precision(torch.bfloat16, kind, "bfloat16 autocast: this GPU supports it")
        return Precision(torch.float16, kind, "this GPU has no bfloat16: float16 autocast instead")
    if kind == "mps":
        return Precision(torch.float16, kind, "Apple MPS: float16 autocast (bfloat16 is not used there)")
    if cpu_has_native_bf16():
        return Precision(torch.bfloat16, kind, "bfloat16 autocast: this CPU has AVX-512 BF16 / AMX")
    if setting == "bf16":
        return Precision(torch.bfloat16, kind, "bfloat16 was requested, but this CPU has no AVX-512 BF16 / AMX: "
                         "it is emulated and slower than float32")
    return Precision(None, kind, "float32: this CPU has no AVX-512 BF16 / AMX, where bfloat16 would be slower")


def set_precision(module: torch.nn.Module, requested: str | None) -> torch.nn.Module:
    """Remember ``requested`` (auto, fp32, bf16 or None for the environment's) on a SAM for its encoder passes.

    Checked at once, so a bad value fails before any work; the device is
    resolved at each pass, so moving the model later is fine.
    """
    module.autosam_precision = None if requested is None else _requested(requested)  # type: ignore[attr-defined]
    return module


def module_precision(module: torch.nn.Module) -> Precision:
    """The precision a SAM's encoder runs at: its :func:`set_precision` setting, on its current device."""
    device = next(module.parameters()).device
    return resolve_precision(device, getattr(module, "autosam_precision", None))
