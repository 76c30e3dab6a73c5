"""Optional ``torch.compile`` of SAM's image encoder (``NAPARI_AUTOSAM_COMPILE=1``).

It costs a minute of compilation per process and input shape, and has not
been measured to pay off here, so it is off unless asked for.
"""

from __future__ import annotations

import os

#: Environment variable: "1" compiles SAM's image encoder with torch.compile.
COMPILE_ENV = "NAPARI_AUTOSAM_COMPILE"


def maybe_compile(sam, enabled: bool | None = None) -> bool:
    """Compile SAM's image encoder in place with ``torch.compile`` when enabled (idempotent).

    ``enabled=None`` follows ``NAPARI_AUTOSAM_COMPILE`` (off unless "1").
    The state dict keeps its keys (``nn.Module.compile``).  Returns whether
    the encoder is compiled.
    """
    if enabled is None:
        enabled = os.environ.get(COMPILE_ENV, "0").strip() == "1"
    encoder = sam.image_encoder
    if enabled and not getattr(encoder, "_autosam_compiled", False):
        encoder.compile(dynamic=False)
        encoder._autosam_compiled = True
    return bool(getattr(encoder, "_autosam_compiled", False))
