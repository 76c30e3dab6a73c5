"""The ``napari-autosam`` command line: one sub-command per module in this package.

Each sub-command module defines ``register(subparsers)``, which adds its
parser and sets ``func`` to a callable taking the parsed arguments and
returning an exit code.  Heavy imports (torch, napari) happen inside the
sub-commands, so ``napari-autosam --help`` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS = ("info", "download", "segment", "train", "evaluate", "review", "geojson", "demo")


class CommandError(Exception):
    """An error the user can fix; printed as one line without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-autosam",
        description="Automatic SAM segmentation with a learned prompt generator (AutoSAM).",
    )
    parser.add_argument("--version", action="version", version=f"napari-autosam {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CommandError, FileNotFoundError, ValueError) as exc:
        print(f"napari-autosam {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
