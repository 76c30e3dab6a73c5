"""Does napari stay responsive while AutoSAM segments and fine-tunes in the background?

A QTimer on the GUI thread ticks every 10 ms; a *stall* is how much later
than due a tick arrives.  The benchmark drives the real widget (a stack
segmented whole, then a fine-tune on accepted corrections) under two
settings of the background runner:

* ``naive``: torch in the worker uses every core, every progress event is
  forwarded to the GUI (what a plain ``thread_worker`` does);
* ``tuned``: the defaults of :class:`napari_autosam._qt.workers.TaskRunner`
  (torch capped at cores - 1 in the worker, the worker thread at a lower OS
  priority, progress events throttled to 2 per second).

It prints the worst and 99th-percentile stall of each, and the fine-tuning
throughput (g steps per second) in the background against the same training
run headless (no GUI, main thread), with torch's default threads and with the
same cap as the worker.  ``--diagnose`` also samples where the GUI thread is
during stalls.

Run it under a display (it re-executes itself under ``xvfb-run`` when there
is none)::

    python benchmarks/bench_responsiveness.py            # tiny SAM, ~2 minutes on 2 cores
    python benchmarks/bench_responsiveness.py --slices 24 --train-images 8 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _ensure_display() -> None:
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        if shutil.which("xvfb-run") and not os.environ.get("_AUTOSAM_BENCH_XVFB"):
            env = {**os.environ, "_AUTOSAM_BENCH_XVFB": "1"}
            cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, *sys.argv]
            sys.exit(subprocess.call(cmd, env=env))
        sys.exit("no display: run under a desktop session or install xvfb (xvfb-run)")


class Heartbeat:
    """Ticks every ``interval_ms`` on the GUI thread and records how late each tick is."""

    def __init__(self, interval_ms: int = 10) -> None:
        from qtpy.QtCore import QTimer

        self.interval = interval_ms / 1000
        self.stalls: list[float] = []
        self._last = None
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.stalls.append(max(0.0, now - self._last - self.interval))
        self._last = now

    def start(self) -> None:
        self.stalls, self._last = [], None
        self.timer.start()

    def stop(self) -> dict:
        self.timer.stop()
        import numpy as np

        stalls = np.asarray(self.stalls or [0.0]) * 1000
        return {"worst_ms": float(stalls.max()), "p99_ms": float(np.percentile(stalls, 99)), "ticks": len(self.stalls)}


class StallSampler:
    """A watchdog thread: when the GUI thread's heartbeat is late by more than ``threshold``, it
    records where the GUI thread is (its Python stack) -- to find out *what* stalls it."""

    def __init__(self, heartbeat: Heartbeat, threshold: float = 0.03) -> None:
        import threading

        self.heartbeat = heartbeat
        self.threshold = threshold
        self.gui_thread = threading.get_ident()
        self.samples: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        import traceback

        while not self._stop.wait(0.01):
            last = self.heartbeat._last
            if last is None or time.perf_counter() - last < self.threshold + self.heartbeat.interval:
                continue
            frame = sys._current_frames().get(self.gui_thread)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)
            inner = stack[-3:]
            ours = [f for f in stack if "napari_autosam" in f.filename][-1:]
            key = " <- ".join(f"{Path(f.filename).parent.name}/{Path(f.filename).name}:{f.lineno} {f.name}"
                              for f in reversed(inner + ours)) or "(Qt/C++)"
            self.samples[key] = self.samples.get(key, 0) + 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> list[tuple[str, int]]:
        self._stop.set()
        self._thread.join()
        return sorted(self.samples.items(), key=lambda kv: -kv[1])[:12]


def _pump_until(app, done, timeout: float) -> None:
    end = time.perf_counter() + timeout
    while not done() and time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)
    app.processEvents()


def measure(args) -> dict:
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    from napari_autosam._qt.main_widget import AutoSAMWidget
    from napari_autosam._qt.segment_section import Request
    from napari_autosam.data.synthetic import make_nuclei_dataset, make_nuclei_stack

    viewer = napari.Viewer()
    app = QApplication.instance()
    widget = AutoSAMWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right")
    widget.model_section.select_sam(args.sam)
    widget.session.train_settings = {"epochs": args.epochs, "h_epochs": 1, "batch_size": 2, "variants": ("identity",),
                                     "patience": None, "input_size": 256, "seed": 0}
    stack, _ = make_nuclei_stack(args.slices, (256, 256), seed=1)
    viewer.add_image(stack, name="stack")
    for image, labels in make_nuclei_dataset(args.train_images, (256, 256), seed=2, stain="he"):
        widget.session.annotations.accept(image, labels > 0, source="benchmark")
    runners = widget.runners
    idle = lambda: not any(r.running for r in runners)  # noqa: E731

    widget.model_section.load()
    _pump_until(app, idle, 600)
    # warm the embedding cache of the training images and the stack, so both settings do the same work
    widget.segment_section.segment(Request("stack", "stack", False))
    _pump_until(app, idle, 1200)

    heartbeat = Heartbeat()
    sampler = StallSampler(heartbeat) if args.diagnose else None
    if sampler is not None:
        sampler.start()
    heartbeat.start()
    _pump_until(app, lambda: False, 2.0)
    results = {"idle": heartbeat.stop()}
    from napari_autosam._qt.workers import EVENT_INTERVAL, background_threads

    settings = {"naive": {"threads": None, "interval": 0.0, "lower_priority": False},
                "tuned": {"threads": background_threads(), "interval": EVENT_INTERVAL, "lower_priority": True}}
    for name, values in settings.items():
        for runner in runners:
            for key, value in values.items():
                setattr(runner, key, value)
        heartbeat.start()
        started = time.perf_counter()
        widget.segment_section.segment(Request("stack", "stack", False))
        _pump_until(app, idle, 1200)
        results[f"segment/{name}"] = {**heartbeat.stop(), "seconds": time.perf_counter() - started}

        events = []
        widget.train_runner.progress.connect(events.append)
        heartbeat.start()
        widget.finetune_section.start()
        _pump_until(app, idle, 1800)
        widget.train_runner.progress.disconnect(events.append)
        stats = heartbeat.stop()
        g_events = [e for e in events if e.phase == "train_g" and e.step > 0]
        last = g_events[-1]
        results[f"train/{name}"] = {**stats, "g_steps_per_s": last.step / max(last.elapsed, 1e-9)}
    session = widget.session
    viewer.close()
    if sampler is not None:
        print("Where the GUI thread was during stalls over 30 ms (10 ms samples):")
        for where, count in sampler.stop():
            print(f"  {count * 10:5d} ms  {where}")

    # The same training headless: main thread, torch's default threads, no GUI.
    import torch

    from napari_autosam.models.store import ModelStore
    from napari_autosam.progress import run
    from napari_autosam.sam.cache import EmbeddingCache
    from napari_autosam.training import TrainConfig, samples_from_arrays, train

    images, masks, names = session.annotations.arrays()
    default_threads = torch.get_num_threads()
    # torch's default is one thread per core; set it explicitly (the GUI run may have changed it)
    for name, threads in (("headless", os.cpu_count() or 1), ("headless-capped", background_threads())):
        torch.set_num_threads(threads)
        events = []
        run(train(session.sam, samples_from_arrays(images, masks, names), config=TrainConfig(**session.train_settings),
                  store=ModelStore(Path(tempfile.mkdtemp()) / "models"),
                  cache=EmbeddingCache(session.sam, session.embedding_dir())), on_progress=events.append)
        last = [e for e in events if e.phase == "train_g" and e.step > 0][-1]
        results[f"train/{name}"] = {"g_steps_per_s": last.step / max(last.elapsed, 1e-9), "threads": threads}
    torch.set_num_threads(default_threads)
    _ = np  # numpy imported for the Heartbeat's percentiles
    return results


def report(results: dict, args) -> str:
    lines = [f"GUI responsiveness while AutoSAM works in the background (SAM {args.sam}, {args.slices}-slice stack, "
             f"fine-tune {args.epochs} epochs on {args.train_images} images, {os.cpu_count()} cores)",
             f"{'':18s}{'worst stall':>12s}{'p99 stall':>11s}{'g steps/s':>11s}"]
    for key, value in results.items():
        worst = f"{value['worst_ms']:.0f} ms" if "worst_ms" in value else ""
        p99 = f"{value['p99_ms']:.0f} ms" if "p99_ms" in value else ""
        rate = f"{value['g_steps_per_s']:.2f}" if "g_steps_per_s" in value else ""
        lines.append(f"{key:18s}{worst:>12s}{p99:>11s}{rate:>11s}")
    bg = results["train/tuned"]["g_steps_per_s"]
    for key in ("train/headless", "train/headless-capped"):
        value = results[key]
        lines.append(f"background (tuned) / {key.split('/')[1]} ({value['threads']} torch threads) training throughput: "
                     f"{bg / value['g_steps_per_s']:.0%}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sam", default="tiny")
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--train-images", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--diagnose", action="store_true", help="sample the GUI thread's stack during stalls")
    args = parser.parse_args()
    _ensure_display()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["NAPARI_AUTOSAM_DATA"] = str(Path(tmp) / "data")
        os.environ.setdefault("NAPARI_AUTOSAM_CACHE", str(Path(tmp) / "cache"))
        os.environ.pop("NAPARI_AUTOSAM_SYNC", None)
        print(report(measure(args), args))


if __name__ == "__main__":
    main()
