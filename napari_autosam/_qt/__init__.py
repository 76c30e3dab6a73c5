"""The napari widgets of napari-autosam: the only part of the package that imports napari and Qt.

Importing this package guards against a crash: PyTorch's CUDA wheels import
``triton`` lazily (through ``torch._dynamo``, e.g. when the first optimiser is
built), and triton's bundled LLVM clashes with the LLVM that Mesa's OpenGL
drivers (llvmpipe, radeonsi) load into napari once it draws -- the process
dies with a segmentation fault.  Whether napari has drawn yet when torch gets
there cannot be known in advance, so in a process that imports the widgets
triton is marked unavailable (unless it is already loaded) and torch skips it.
The widgets never use triton (``torch.compile`` is off in the GUI).
"""

from __future__ import annotations

import sys


def avoid_triton_llvm_clash() -> None:
    """Keep torch from importing triton later in this (GUI) process; see the module docstring.

    Safe to call more than once.  A triton that is already imported stays (it
    was loaded before Mesa's LLVM, which is the order that works).
    """
    if sys.platform.startswith("linux") and "triton" not in sys.modules:
        sys.modules["triton"] = None  # `import triton` now raises ImportError; torch treats it as absent


avoid_triton_llvm_clash()
