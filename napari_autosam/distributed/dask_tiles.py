"""The client's side of one big slide spread over dask workers (see :mod:`.tile_tasks` for the tasks).

:class:`SlideRun` submits a slide's tile groups at once, then each output
region as soon as every tile group reaching it is done (in ``--mode
instances`` once the instances are pasted), then the closing task.  No
future is passed to another task (only the plan, paths and boxes), so a
lost worker makes the scheduler re-run only the tasks it had.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from distributed import get_worker

from .tile_tasks import (
    SlidePlan,
    TileSegmenter,
    finish_slide,
    paste_instances_task,
    reaches,
    region_boxes,
    segment_group,
    write_region,
)

__all__ = ["REGION_LEVELS", "SlideRun", "tiles_per_task"]

#: Output regions are ``CHUNK·2^REGION_LEVELS`` px a side (4096²): each region task writes its own
#: level-0 chunks and levels 1-2; the closing task builds the rest from level 2 (1/16 of the pixels).
REGION_LEVELS = 2
#: Tile groups per worker a slide is cut into (enough for a lost worker or an uneven one to even out) …
GROUPS_PER_WORKER = 4
#: … with at most this many tiles in a group.
MAX_TILES_PER_TASK = 16


def tiles_per_task(n_tiles: int, n_workers: int, batch_size: int = 1) -> int:
    """Tiles in one task: about :data:`GROUPS_PER_WORKER` groups per worker, a multiple of ``batch_size``."""
    size = max(1, min(MAX_TILES_PER_TASK, math.ceil(n_tiles / (GROUPS_PER_WORKER * max(1, n_workers)))))
    return batch_size * math.ceil(size / batch_size)


def _group_task(plan: SlidePlan, indices: list[int], args, plugin_name: str):
    worker = get_worker()
    segmenter = worker.plugins[plugin_name].segmenter(args, kind=TileSegmenter)
    windows, notes = segment_group(segmenter, plan, indices, args)
    return windows, notes, worker.address


def _paste_task(plan: SlidePlan, args) -> None:
    paste_instances_task(plan, args)


def _region_task(plan: SlidePlan, box, levels: int) -> dict:
    return write_region(plan, box, levels)


def _finish_task(plan: SlidePlan, levels: int, max_label: int, args) -> list[str]:
    return finish_slide(plan, levels, max_label, args)


class SlideRun:
    """The tasks of one slide and what has come back of them.

    Parameters
    ----------
    client : distributed.Client
    job : the batch job (input path, output folder, stem)
    plan : the :class:`SlidePlan` its first task returned
    args, plugin : the ``segment`` options and the name of the model plugin
    key : a unique prefix for the task keys
    per_task : tiles per task (default :func:`tiles_per_task`)
    levels : pyramid levels written by the region tasks (default :data:`REGION_LEVELS`)
    """

    def __init__(self, client, job, plan: SlidePlan, args, plugin: str, key: str, *, per_task: int | None = None,
                 levels: int = REGION_LEVELS) -> None:
        self.client, self.job, self.plan, self.args, self.plugin, self.key = client, job, plan, args, plugin, key
        self.levels = int(levels)
        n_workers = len(client.scheduler_info()["workers"])
        size = per_task or tiles_per_task(plan.n_tiles, n_workers, plan.batch_size)
        self.groups = [list(range(i, min(i + size, plan.n_tiles))) for i in range(0, plan.n_tiles, size)]
        group_of = {i: g for g, group in enumerate(self.groups) for i in group}
        tiles = plan.tiles()
        self.regions = region_boxes(plan.shape, self.levels)
        self.needs = [{group_of[t.index] for t in tiles if reaches(t.window, box)} for box in self.regions]
        self.groups_done: set[int] = set()
        self.regions_sent: set[int] = set()
        self.counts: list[dict] = []
        self.notes: dict[int, list[str]] = {}
        self.windows: dict = {}
        self.tile_workers: Counter = Counter()
        self.futures: dict = {}  # future -> (kind, number)
        self.units = 0  # progress units counted: tiles, and 1 when the slide is complete
        self.names: list[str] | None = None
        self.failed = False

    @property
    def total_units(self) -> int:
        return self.plan.n_tiles + 1

    def _submit(self, func, kind: str, number: int, *args) -> object:
        future = self.client.submit(func, *args, key=f"{self.key}-{kind}-{number}", pure=False)
        self.futures[future] = (kind, number)
        return future

    def start(self) -> list:
        """Submit every tile group; return their futures."""
        return [self._submit(_group_task, "tiles", g, self.plan, group, self.args, self.plugin)
                for g, group in enumerate(self.groups)]

    def _ready_regions(self) -> list:
        if "instances" in self.plan.roles:
            return []  # they wait for the paste
        ready = [r for r, needs in enumerate(self.needs) if r not in self.regions_sent and needs <= self.groups_done]
        self.regions_sent.update(ready)
        return [self._submit(_region_task, "region", r, self.plan, self.regions[r], self.levels) for r in ready]

    def done(self, future) -> tuple[list, int]:
        """Take in a finished task; return the tasks to submit now and the progress units it completes.

        Raises the task's exception (the slide then fails).
        """
        kind, number = self.futures.pop(future)
        value = future.result()
        future.release()  # taken: a worker lost later must not make the scheduler run it again
        if kind == "tiles":
            windows, notes, worker = value
            self.windows.update(windows)
            self.notes[number] = notes
            self.tile_workers[worker] += len(self.groups[number])
            self.groups_done.add(number)
            new = self._ready_regions()
            if "instances" in self.plan.roles and len(self.groups_done) == len(self.groups):
                new.append(self._submit(_paste_task, "paste", 0, self.plan, self.args))
            return new, self._count(len(self.groups[number]))
        if kind == "paste":
            self.regions_sent.update(range(len(self.regions)))
            return [self._submit(_region_task, "region", r, self.plan, box, self.levels)
                    for r, box in enumerate(self.regions)], 0
        if kind == "region":
            self.counts.append(value)
            if len(self.counts) < len(self.regions):
                return [], 0
            max_label = max(c["max_label"] for c in self.counts)
            return [self._submit(_finish_task, "finish", 0, self.plan, self.levels, max_label, self.args)], 0
        self.names = value
        return [], self._count(1)

    def _count(self, units: int) -> int:
        self.units += units
        return units

    def fail(self) -> int:
        """Cancel what is still running; return the progress units never to be counted."""
        self.failed = True
        self.client.cancel(list(self.futures))
        self.futures.clear()
        return self.total_units - self.units

    def report(self) -> str:
        """The command line's report line of this slide (as one process prints it)."""
        from ..inference.instances import capped_messages
        from ..inference.ondisk import OnDiskResult
        from ..io.labels_zarr import labels_path
        from ..jobs.segment import ondisk_report
        from ..losses import dice_from_counts

        plan = self.plan
        capped = [note for g in sorted(self.notes) for note in self.notes[g]]
        messages = capped_messages(capped)
        both = "autosam" in plan.roles and "h" in plan.roles
        agreement = [dice_from_counts(sum(c["inter"] for c in self.counts), sum(c["total"] for c in self.counts))]
        foreground = sum(c["foreground"] for c in self.counts) / float(plan.shape[0] * plan.shape[1])
        paths = {role: labels_path(plan.out, plan.stem, role) for role in plan.roles}
        result = OnDiskResult(paths, None, agreement if both else [], plan.normalization, foreground,
                              messages=messages)
        return ondisk_report(Path(plan.path), plan.shape, result, plan.resolution, self.args.preview)
