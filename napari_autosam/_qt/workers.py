"""Run the engines' progress generators off the GUI thread, and show their progress.

The pattern of stardist-napari: a long computation is a generator that
yields :class:`~napari_autosam.progress.Progress` and returns its result;
here it runs inside a napari thread worker (``yielded`` → progress bar,
``returned`` → the caller's callback, ``errored`` → a notification).
``NAPARI_AUTOSAM_SYNC=1`` runs it in the calling thread instead (scripts, CI).

Four measures keep the GUI responsive while a task runs (see
``benchmarks/bench_responsiveness.py`` and docs/user-guide.md for the numbers):

* the worker thread caps torch's intra-op threads (:func:`background_threads`)
  so the GUI thread always has a core (the cap is per thread: the GUI's own
  torch calls keep the default);
* the worker thread runs at a lower OS priority (:func:`_lower_this_thread`),
  in a pool of its own;
* progress events are throttled (:func:`throttle`) so a fast loop cannot
  flood the Qt event loop with queued signals and repaints;
* cancellation is cooperative through a :class:`~napari_autosam.progress.CancelToken`,
  so a cancelled task still returns its best result so far.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from qtpy.QtCore import QCoreApplication, QObject, Qt, QThread, QThreadPool, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ..progress import EVENT_INTERVAL, CancelToken, Progress, Task, cancellable, single_step, throttle  # noqa: F401
from . import notify

#: Set to 1 to run every task synchronously in the GUI thread (like stardist-napari's switch).
SYNC_ENV = "NAPARI_AUTOSAM_SYNC"
#: Number of torch threads for background work (default: all cores but one).
THREADS_ENV = "NAPARI_AUTOSAM_THREADS"
# EVENT_INTERVAL (progress.py): minimum seconds between two progress events forwarded to the
# GUI.  Each one repaints the dock, which costs ~20 ms under software OpenGL.
#: How much nicer than the GUI thread the worker threads run (Linux nice levels).
BACKGROUND_NICE = 10


def sync_mode() -> bool:
    return os.environ.get(SYNC_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def background_threads() -> int:
    """Torch intra-op threads for a worker: ``$NAPARI_AUTOSAM_THREADS``, else all cores but one."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        return max(1, int(value))
    return max(1, (os.cpu_count() or 2) - 1)


def _lower_this_thread() -> None:
    """Give the calling (worker) thread a lower scheduling priority than the GUI thread.

    On Linux a thread has its own nice value (``setpriority`` with its thread id);
    elsewhere Qt's thread priority maps to the platform's.  The worker threads
    belong to this module's own pool, so napari's global pool is never affected.
    """
    import threading

    try:
        if sys.platform.startswith("linux"):
            tid = threading.get_native_id()
            target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + BACKGROUND_NICE)
            if os.getpriority(os.PRIO_PROCESS, tid) < target:
                os.setpriority(os.PRIO_PROCESS, tid, target)
        else:
            QThread.currentThread().setPriority(QThread.Priority.LowPriority)
    except (OSError, AttributeError):  # not permitted or not supported: run at normal priority
        pass


_POOL: QThreadPool | None = None
#: Workers started and not finished yet (a reference keeps each alive while it runs).
_RUNNING: set = set()


def _pool() -> QThreadPool:
    """The thread pool of napari-autosam's workers (threads keep their lowered priority here)."""
    global _POOL
    if _POOL is None:
        _POOL = QThreadPool()
        _POOL.setMaxThreadCount(4)
        app = QCoreApplication.instance()
        if app is not None:  # let running tasks see their cancel token and end before Qt goes
            app.aboutToQuit.connect(_drain)
    return _POOL


def _drain() -> None:
    for worker in list(_RUNNING):
        worker.quit()
    if _POOL is not None:
        _POOL.waitForDone(10_000)


def _in_worker(task: Task, threads: int | None, interval: float, lower_priority: bool) -> Task:
    """The generator the worker thread drives: cap torch's threads there, then run the task."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)  # per thread: the GUI thread keeps its own setting
    if lower_priority:
        _lower_this_thread()
    return (yield from throttle(task, interval) if interval > 0 else task)


class _Worker(GeneratorWorker):
    """napari's generator worker, with errors reported by :class:`TaskRunner` (once, in one line)
    and napari's own cancel button (in its activity area) cancelling through the task's token."""

    token: CancelToken | None = None

    def _relay_error(self, exc: Exception) -> None:  # reported by TaskRunner instead
        pass

    def start(self) -> None:
        """Run in this module's pool rather than napari's global one (see :func:`_lower_this_thread`).

        Only public API: the worker is a ``QRunnable`` started in :func:`_pool`,
        kept alive in :data:`_RUNNING` until its ``finished`` signal.
        """
        if self in _RUNNING:
            raise RuntimeError("This worker is already started!")
        _RUNNING.add(self)
        self.finished.connect(lambda: _RUNNING.discard(self))
        _pool().start(self)

    def quit(self) -> None:
        if self.token is not None:
            self.token.cancel()  # cooperative: the task returns what it has
        else:
            super().quit()


class TaskRunner(QObject):
    """Runs one task at a time in the background and tells a :class:`ProgressPanel` about it.

    Signals
    -------
    started(str) : the task's title
    progress(object) : each (throttled) :class:`Progress` event
    finished(str, str) : title and outcome (``"done"``, ``"cancelled"`` or ``"failed"``)
    """

    started = Signal(str)
    progress = Signal(object)
    finished = Signal(str, str)

    def __init__(self, parent: QObject | None = None, *, threads: int | None = -1,
                 interval: float = EVENT_INTERVAL, lower_priority: bool = True) -> None:
        super().__init__(parent)
        #: torch threads in the worker (-1: :func:`background_threads`; None: leave torch's default)
        self.threads = background_threads() if threads == -1 else threads
        #: minimum seconds between forwarded progress events (0: forward every event)
        self.interval = interval
        #: run the worker thread at a lower OS priority than the GUI thread
        self.lower_priority = lower_priority
        self.token: CancelToken | None = None
        self.worker: _Worker | None = None
        self.title = ""
        self.started_at = 0.0

    @property
    def running(self) -> bool:
        return self.token is not None

    def cancel(self) -> None:
        if self.token is not None:
            self.token.cancel()

    def start(
        self,
        title: str,
        make_task: Callable[[CancelToken], Task],
        on_result: Callable[[Any], Any],
        *,
        on_error: Callable[[BaseException], Any] | None = None,
    ) -> bool:
        """Start ``make_task(token)``; call ``on_result(result)`` in the GUI thread when it returns.

        Returns False (and tells the user) if a task is already running here.
        """
        if self.running:
            notify.info(f"Still busy with “{self.title}”; cancel it or wait for it to finish.")
            return False
        self.token, self.title, self.started_at = CancelToken(), title, time.perf_counter()
        token = self.token
        self.started.emit(title)
        try:
            task = make_task(token)
        except Exception as exc:  # bad arguments: report at once, never start a thread
            self._fail(exc, on_error)
            return False
        if sync_mode():
            self._run_sync(task, on_result, on_error)
            return True
        worker = create_worker(_in_worker, task, self.threads, self.interval, self.lower_priority,
                               _worker_class=_Worker, _start_thread=False, _ignore_errors=True)
        worker.token = token
        worker.yielded.connect(self.progress.emit, Qt.ConnectionType.QueuedConnection)
        worker.returned.connect(lambda result: self._succeed(result, on_result))
        worker.errored.connect(lambda exc: self._fail(exc, on_error))
        worker.aborted.connect(lambda: self._end("cancelled"))
        self.worker = worker
        worker.start()
        return True

    def _run_sync(self, task: Task, on_result, on_error) -> None:
        try:
            while True:
                try:
                    event = next(task)
                except StopIteration as stop:
                    result = stop.value
                    break
                self.progress.emit(event)
        except Exception as exc:
            self._fail(exc, on_error)
            return
        self._succeed(result, on_result)

    def _succeed(self, result: Any, on_result) -> None:
        # End first: the callback may start the next task on this runner (load SAM, then segment).
        title = self.title
        self._end("cancelled" if self.token is not None and self.token.cancelled else "done")
        try:
            on_result(result)
        except Exception as exc:
            notify.error(title, exc)

    def _fail(self, exc: BaseException, on_error) -> None:
        from ..progress import Cancelled

        outcome = "cancelled" if isinstance(exc, Cancelled) else "failed"
        notify.error(self.title, exc)
        if on_error is not None:
            try:
                on_error(exc)
            except Exception as inner:  # an error handler must not take the GUI down
                notify.log.exception("error handler failed: %s", inner)
        self._end(outcome)

    def _end(self, outcome: str) -> None:
        if self.token is None:
            return
        self.token, self.worker = None, None
        self.finished.emit(self.title, outcome)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class ProgressPanel(QWidget):
    """A progress bar, a status line with the time left, and a Cancel button for one runner."""

    def __init__(self, runner: TaskRunner, parent: QWidget | None = None, *, idle_text: str = "",
                 phase_names: dict[str, str] | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.idle_text = idle_text
        self.phase_names = phase_names or {}
        self._line = ""  # the last line of the task's own steps
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(True)
        self.bar.setFormat("")
        self.bar.setToolTip("Progress of the running task")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setToolTip("What the background task is doing, and about how long it still needs")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running task; what is finished so far is kept (Shift+Alt+X)")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(runner.cancel)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.status)
        runner.started.connect(self._started)
        runner.progress.connect(self._progress)
        runner.finished.connect(self._finished)
        self.bar.setVisible(False)
        self.cancel_button.setVisible(False)
        self._say(idle_text)

    def _say(self, text: str) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))  # no empty line while idle

    def _started(self, title: str) -> None:
        self.bar.setVisible(True)
        self.cancel_button.setVisible(True)
        self.cancel_button.setEnabled(True)
        # Not Qt's "busy" bar: its animation repaints the window ~30 times a second, and under
        # software OpenGL every repaint of a dock composites the whole napari window.
        self.bar.setValue(0)
        self.bar.setFormat("…")
        self._line = f"{title}…"
        self._say(self._line)

    def _progress(self, event: Progress) -> None:
        if event.depth > 0:  # a nested task's step: the bar stays with the task's own steps
            if event.message:
                self._say(f"{self._line} — {event.message}" if self._line else event.message)
            return
        fraction = event.fraction
        if fraction is not None:
            self.bar.setValue(int(fraction * 1000))
            self.bar.setFormat(f"{fraction:.0%}")
        text = event.message or f"{event.phase} {event.step}/{event.total or '?'}"
        if event.phase in self.phase_names:
            text = f"{self.phase_names[event.phase]}: {text}"
        if event.eta is not None and (fraction is None or fraction < 1):
            text += f" — about {_duration(event.eta)} left"
        self._line = text
        self._say(text)

    def _finished(self, title: str, outcome: str) -> None:
        took = _duration(time.perf_counter() - self.runner.started_at)
        self.bar.setValue(1000 if outcome == "done" else 0)
        self.bar.setFormat("")
        self.bar.setVisible(False)
        self.cancel_button.setEnabled(False)
        self.cancel_button.setVisible(False)
        self._say({"done": f"{title}: done in {took}.", "cancelled": f"{title}: cancelled after {took}.",
                             "failed": f"{title}: failed (see the notification)."}[outcome])
