"""The ``--precision`` option shared by ``segment``, ``train`` and ``evaluate``."""

from __future__ import annotations

import sys

PRECISION_CHOICES = ("auto", "fp32", "bf16")


def add_precision_argument(parser) -> None:
    """Add ``--precision auto|fp32|bf16`` (SAM's image encoder) to a sub-command's parser."""
    parser.add_argument("--precision", choices=PRECISION_CHOICES, default=None,
                        help="SAM image encoder precision: auto (bfloat16 on CPUs with AVX-512 BF16/AMX and on "
                        "GPUs, float16 on Apple MPS, else float32), fp32 or bf16 (default: auto, or "
                        "$NAPARI_AUTOSAM_PRECISION)")


def apply_precision(sam, args) -> None:
    """Give ``sam`` the ``--precision`` setting and say on stderr what the encoder will run at, when not float32."""
    from ..device import module_precision, set_precision

    set_precision(sam, getattr(args, "precision", None))
    chosen = module_precision(sam)
    if chosen.dtype is not None or getattr(args, "precision", None) not in (None, "fp32"):
        print(f"note: SAM encoder precision {chosen.name}: {chosen.reason}", file=sys.stderr)
