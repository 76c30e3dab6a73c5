"""``napari-autosam info``: versions, devices, cache and checkpoints."""

from __future__ import annotations

import json


def collect() -> dict:
    """What a bug report needs: versions, devices, cache location and what is cached."""
    import platform

    import torch

    from .. import __version__
    from ..device import available_devices, pick_device
    from ..sam.download import OFFICIAL_CHECKPOINTS, cache_dir, checkpoint_dir

    cached = {}
    for name, info in OFFICIAL_CHECKPOINTS.items():
        path = checkpoint_dir() / info.filename
        cached[name] = str(path) if path.is_file() else None
    return {
        "napari_autosam": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "devices": available_devices(),
        "default_device": str(pick_device()),
        "cache_dir": str(cache_dir()),
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
        print(f"{'sam ' + name:<{width}}  {path or 'not downloaded (napari-autosam download ' + name + ')'}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="show versions, devices and cached checkpoints")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_run)
