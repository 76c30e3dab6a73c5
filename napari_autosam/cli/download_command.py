"""``napari-autosam download``: fetch and verify SAM checkpoints (official and domain SAMs) into the cache."""

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
    from ..sam.checkpoints import DOMAIN_CHECKPOINTS, checkpoint_names

    domain = "; ".join(f"{name}: {info.description}" for name, info in DOMAIN_CHECKPOINTS.items())
    parser = subparsers.add_parser(
        "download",
        help="download SAM checkpoints (official, or fine-tuned for histology and microscopy) into the cache",
        description="Download SAM checkpoints into the cache directory (NAPARI_AUTOSAM_CACHE overrides it) and "
        "verify them: Meta's official ones by size and MD5, the domain SAMs by the XXH128 checksum their "
        f"publishers give. Domain SAMs: {domain}.",
    )
    parser.add_argument("names", nargs="+", choices=checkpoint_names(), metavar="NAME",
                        help=f"checkpoint name: {', '.join(checkpoint_names())}")
    parser.set_defaults(func=_run)
