"""``napari-autosam download``: fetch and verify official SAM checkpoints into the cache."""

from __future__ import annotations


def _run(args) -> int:
    from ..sam.download import DownloadError, ensure_checkpoint
    from . import CommandError
    from .progressbar import ProgressBar

    for name in args.names:
        try:
            path = ProgressBar(unit="B", unit_scale=True).run(ensure_checkpoint(name, verify=True))
        except DownloadError as exc:
            raise CommandError(str(exc)) from exc
        print(f"{name}: {path}")
    return 0


def register(subparsers) -> None:
    from ..sam.download import OFFICIAL_CHECKPOINTS

    parser = subparsers.add_parser(
        "download",
        help="download official SAM checkpoints (checked by MD5) into the cache",
        description="Download official SAM checkpoints into the cache directory "
        "(NAPARI_AUTOSAM_CACHE overrides it) and verify their MD5 checksums.",
    )
    parser.add_argument("names", nargs="+", choices=sorted(OFFICIAL_CHECKPOINTS), metavar="NAME",
                        help=f"checkpoint name: {', '.join(sorted(OFFICIAL_CHECKPOINTS))}")
    parser.set_defaults(func=_run)
