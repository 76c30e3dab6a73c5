"""``segment``'s whole-slide options: tissue detection and the two-speed path (h first, then SAM where it matters)."""

from __future__ import annotations

from ..inference.two_speed import SAM_ON
from ..jobs.slide_two_speed import DEFAULT_SAM_SHARE


def add_slide_args(parser) -> None:
    group = parser.add_argument_group("whole slides (default for slides whose labels go to OME-Zarr)")
    group.add_argument("--tissue", default=None, metavar="auto|off|FILE",
                       help="auto (default for slides): detect the tissue and never encode the glass; off: every "
                       "tile; FILE: a mask image (stretched over the slide) or a GeoJSON of regions (level-0 pixels)")
    group.add_argument("--sam-on", choices=SAM_ON, default=None,
                       help="after h(g(I)) on every tissue tile: SAM on the tiles where h is least sure "
                       "(uncertain, default for slides), on every tissue tile (all), or nowhere (none)")
    group.add_argument("--sam-share", type=float, default=DEFAULT_SAM_SHARE, metavar="F",
                       help=f"with --sam-on uncertain: the share of tissue tiles (default {DEFAULT_SAM_SHARE})")
    group.add_argument("--sam-budget", type=float, default=None, metavar="MINUTES",
                       help="stop the SAM pass after about this many minutes, keeping h on the other tiles")
    group.add_argument("--sam-tiles", type=int, default=None, metavar="N", help="SAM on at most N tiles")
