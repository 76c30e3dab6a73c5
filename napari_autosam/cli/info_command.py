"""``napari-autosam info``: versions, devices, where files live, and the SAM checkpoints at hand."""

from __future__ import annotations

import json


def collect() -> dict:
    """What a bug report needs: versions, devices, cache location and what is cached."""
    import platform

    import torch

    from .. import __version__, paths
    from ..device import available_devices, pick_device
    from ..sam.download import OFFICIAL_CHECKPOINTS
    from ..sam.registry import TINY_REVISION

    folder = paths.checkpoint_dir(create=False)
    cached = {}
    for name, info in OFFICIAL_CHECKPOINTS.items():
        path = folder / info.filename
        cached[name] = str(path) if path.is_file() else None
    tiny = folder / f"sam_tiny_r{TINY_REVISION}.pth"
    cached["tiny"] = str(tiny) if tiny.is_file() else None
    return {
        "napari_autosam": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "devices": available_devices(),
        "default_device": str(pick_device()),
        **paths.describe(),
        "checkpoints": cached,
    }


def _run(args) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(map(len, info))
    for key, value in info.items():
        if key == "checkpoints":
            continue
        print(f"{key:<{width}}  {', '.join(value) if isinstance(value, list) else value}")
    for name, path in info["checkpoints"].items():
        missing = ("made on first use (built in: random weights, for tests and the demo)" if name == "tiny"
                   else f"not downloaded (napari-autosam download {name})")
        print(f"{'sam ' + name:<{width}}  {path or missing}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="show versions, devices, the data and cache folders, and the SAM checkpoints")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_run)
