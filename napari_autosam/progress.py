"""Progress events shared by every long computation.

Long work (downloads, encoding, training, segmentation) is written as a
generator that yields :class:`Progress` events and *returns* its result.
The CLI, the tests and the napari widgets all drive the same generator:
the CLI through :func:`run` with a progress bar, the GUI inside a thread
worker, tests synchronously.  Cancellation is cooperative: the generator
checks a :class:`CancelToken` between steps and returns what it has.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

#: A long computation: yields progress, returns a result of type T.
Task = Generator["Progress", None, T]


@dataclass(frozen=True)
class Progress:
    """One progress report.

    Attributes
    ----------
    phase : str
        What is running, e.g. ``"download"``, ``"encode"``, ``"train_g"``,
        ``"train_h"``, ``"segment"``.
    step, total : int
        Units done and units in this phase (``total`` is None when unknown).
    message : str
        A short human-readable line.
    metrics : dict
        Numbers worth showing, e.g. ``{"loss": 0.31, "val_dice": 0.82}``.
    elapsed, eta : float
        Seconds since the phase started and an estimate of seconds left.
    depth : int
        0 for the task's own steps; 1 and more for the steps of a task it runs
        inside one of its own (see :func:`nested`).  Progress bars move with
        depth-0 events and show the deeper ones as detail.
    """

    phase: str
    step: int = 0
    total: int | None = None
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0
    eta: float | None = None
    depth: int = 0

    @property
    def fraction(self) -> float | None:
        """Fraction done in ``[0, 1]``, or None when the total is unknown."""
        if not self.total:
            return None
        return min(1.0, max(0.0, self.step / self.total))


class CancelToken:
    """A thread-safe flag a caller sets to ask a running task to stop early."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


class Cancelled(Exception):
    """Raised by tasks that have no useful partial result when cancelled."""


class Stopwatch:
    """Elapsed time and a linear estimate of the time left for ``total`` steps."""

    def __init__(self, total: int | None = None) -> None:
        self.start = time.perf_counter()
        self.total = total

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def eta(self, step: int) -> float | None:
        if not self.total or step <= 0:
            return None
        return self.elapsed / step * max(0, self.total - step)

    def event(self, phase: str, step: int, message: str = "", **metrics: float) -> Progress:
        return Progress(
            phase=phase,
            step=step,
            total=self.total,
            message=message,
            metrics=dict(metrics),
            elapsed=self.elapsed,
            eta=self.eta(step),
        )


def run(task: Task[T], on_progress: Callable[[Progress], Any] | None = None) -> T:
    """Drive ``task`` to completion, passing each event to ``on_progress``; return its result."""
    while True:
        try:
            event = next(task)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(event)


def nested(task: Task[T]) -> Task[T]:
    """Run ``task`` inside another task: pass its events on one level deeper, return its result.

    ``yield from nested(cache.embed_many(images))`` inside a generator keeps
    the inner progress visible without moving the outer task's bar.
    """
    while True:
        try:
            event = next(task)
        except StopIteration as stop:
            return stop.value
        yield dataclasses.replace(event, depth=event.depth + 1)


#: Minimum seconds between two progress events forwarded by :func:`throttle` by default.
EVENT_INTERVAL = 0.5


def throttle(task: Task[T], interval: float = EVENT_INTERVAL) -> Task[T]:
    """Forward at most one event per ``interval`` seconds, plus the first of each phase and the last.

    A nested (``depth > 0``) event is forwarded only when the interval allows.
    Returns the task's result unchanged.
    """
    last_sent = -float("inf")
    phase = None
    held: Progress | None = None
    while True:
        try:
            event = next(task)
        except StopIteration as stop:
            if held is not None:
                yield held
            return stop.value
        now = time.perf_counter()
        final = event.depth == 0 and event.total is not None and event.step >= event.total
        new_phase = event.depth == 0 and event.phase != phase
        if new_phase or final or now - last_sent >= interval:
            if event.depth == 0:
                phase = event.phase
            last_sent, held = now, None
            yield event
        else:
            held = event


def cancellable(task: Task[T], token: CancelToken) -> Task[T]:
    """Stop ``task`` at its next event once ``token`` is set, for tasks that take no token themselves.

    The task is closed (so its ``finally`` blocks and atomic writes clean up)
    and :class:`Cancelled` is raised.
    """
    while True:
        try:
            event = next(task)
        except StopIteration as stop:
            return stop.value
        if token.cancelled:
            task.close()
            raise Cancelled("cancelled")
        yield event


def single_step(phase: str, message: str, func: Callable[[], T]) -> Task[T]:
    """A task around one short blocking call: one event, then ``func()``'s result."""
    yield Progress(phase=phase, message=message)
    return func()
