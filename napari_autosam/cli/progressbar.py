"""Drive a progress-event generator with a tqdm bar on stderr."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

from ..progress import Progress, T, Task


class ProgressBar:
    """A callback for :func:`napari_autosam.progress.run` that draws one bar per phase."""

    def __init__(self, *, unit: str = "it", unit_scale: bool = False, disable: bool | None = None) -> None:
        self.unit = unit
        self.unit_scale = unit_scale
        self.disable = (not sys.stderr.isatty()) if disable is None else disable
        self._bar: tqdm | None = None
        self._phase: str | None = None
        self.last: Progress | None = None
        self._printed = 0.0
        self._said = ""

    def __call__(self, event: Progress) -> None:
        if event.depth > 0:  # a nested task's step: the bar stays with the task's own steps
            return
        self.last = event
        if event.phase != self._phase:
            self.close()
            self._phase = event.phase
            self._bar = tqdm(total=event.total, desc=event.phase, unit=self.unit, unit_scale=self.unit_scale,
                             file=sys.stderr, disable=self.disable, dynamic_ncols=True)
        bar = self._bar
        if event.total is not None and bar.total != event.total:
            bar.total = event.total
        bar.n = event.step
        if event.metrics:
            bar.set_postfix({k: f"{v:.4g}" if isinstance(v, (int, float)) else str(v)
                             for k, v in event.metrics.items()}, refresh=False)
        bar.refresh()
        # Without a terminal (logs, CI) print a plain line at most every 5 s.
        now = time.monotonic()
        final = event.total is not None and event.step >= event.total
        if self.disable and event.message and event.message != self._said and (final or now - self._printed > 5):
            self._printed, self._said = now, event.message  # a repeated final event is printed once
            print(f"[{event.phase}] {event.message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def run(self, task: Task[T]) -> T:
        from ..progress import run

        try:
            return run(task, self)
        finally:
            self.close()
