"""The napari widgets of napari-autosam: the only part of the package that imports napari and Qt.

Importing this package first guards against a crash: PyTorch's CUDA wheels
import ``triton`` (through ``torch._dynamo``, which torchvision and so
segment-anything pull in), and triton's bundled LLVM clashes with the LLVM
that Mesa's OpenGL drivers (llvmpipe, radeonsi) have already loaded into a
running napari -- the process dies with a segmentation fault.  When Mesa's
LLVM is loaded and triton is not, triton is marked unavailable so torch
skips it; napari-autosam never uses triton (no ``torch.compile``).
"""

from __future__ import annotations

import sys


def _llvm_loaded() -> bool:
    """True if a shared LLVM library (Mesa's OpenGL drivers use one) is mapped into this process."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return any("libLLVM" in line for line in maps)
    except OSError:
        return False


def avoid_triton_llvm_clash() -> None:
    """Call right before the first import of torch's heavy modules (segment-anything, torchvision).

    Whether Mesa's LLVM is loaded depends on whether napari has drawn yet, so
    the check happens at that import, not when this package is imported.
    """
    if sys.platform.startswith("linux") and "triton" not in sys.modules and _llvm_loaded():
        sys.modules["triton"] = None  # `import triton` now raises ImportError; torch treats it as absent


avoid_triton_llvm_clash()
