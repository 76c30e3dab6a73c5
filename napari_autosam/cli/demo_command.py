"""``napari-autosam demo``: the whole loop on the sample image, offline (see :data:`DURATION`).

With a display it opens napari with the H&E sample and the AutoSAM widget and
drives the widget through the loop while you watch: segment with the
untrained prompt generator (noise), accept the sample's true mask as if you
had corrected it (plus five more synthetic images "corrected earlier"),
fine-tune in the background with the live plot, and segment again with the
new version; it ends in the side-by-side comparison.  The tiny SAM (random
but fixed weights) keeps it offline; h(g(I)) and AutoSAM then learn the
nuclei from the corrections alone.

napari then stays open for you to explore (close its window, or press
Ctrl+Q / Cmd+Q, to end the command; ``--quit-after`` closes it by itself).
Without a display (Linux without ``$DISPLAY``) it says so and runs the same
loop headless, writing the masks and a captioned overview PNG to the output
folder.  The loop itself lives in :mod:`napari_autosam.demo_loop`.
Everything goes to ``<data dir>/demo/<time stamp>`` unless ``--out`` says
otherwise -- never the working directory.
"""

from __future__ import annotations

import os
import sys

#: How long the demo takes, as measured: the headless loop took 134 s of CPU time with one torch thread (float32
#: steps); the whole `demo --quit-after` process under a virtual display took 89 s on a 2-core CPU with AVX-512 BF16,
#: whose training steps run in bfloat16.  The README says the same words (tests/test_readme.py checks).
DURATION = "1½ to 2½ minutes on a free 2-core CPU"


def has_display() -> bool:
    if not sys.platform.startswith("linux"):
        return True
    if os.environ.get("QT_QPA_PLATFORM", "").startswith(("offscreen", "minimal")):
        return False  # napari's canvas needs OpenGL, which these platforms lack
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def why_no_window() -> str | None:
    """Why napari cannot open a window here (one line), or None when it can; Qt never starts in this process."""
    if not has_display():
        return "no display found (no $DISPLAY or $WAYLAND_DISPLAY)"
    from ..qt_platform import problem

    return problem()


def _run(args) -> int:
    from ..demo_loop import demo_folder, run_headless
    from .progressbar import ProgressBar

    folder = demo_folder(args.out)
    why_not = None if args.headless else why_no_window()
    if args.headless or why_not:
        if why_not:
            print(f"napari-autosam demo: {why_not}, so napari cannot open; running the same loop headless instead.",
                  file=sys.stderr)
        bar = ProgressBar()
        try:
            summary = run_headless(folder, args.sam, on_progress=bar)
        finally:
            bar.close()
        print(f"napari-autosam demo (headless) done in {summary['seconds']:.0f} s, model {summary['version']}: "
              f"Dice with the true mask {summary['dice_untrained']:.2f} untrained → AutoSAM {summary['dice_autosam']:.2f}, "
              f"h(g(I)) {summary['dice_h']:.2f}. Results in {folder} (overview.png)")
        return 0
    from .._qt.demo_driver import run_gui

    return run_gui(folder, sam_name=args.sam, quit_after=args.quit_after, screenshot=args.screenshot)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help=f"open napari with the sample image and show the whole loop (offline, {DURATION})",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    parser.add_argument("--out", metavar="DIR", help="folder for the demo's corrections and models "
                        "(default: <data dir>/demo/<time stamp>)")
    parser.add_argument("--sam", default="tiny", help="SAM to use (default: tiny, which needs no download)")
    parser.add_argument("--headless", action="store_true", help="run the loop without napari and write the results")
    parser.add_argument("--quit-after", action="store_true", help="close napari when the demo has shown its result")
    parser.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the final view")
    parser.set_defaults(func=_run)
