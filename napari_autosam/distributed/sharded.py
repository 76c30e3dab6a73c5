"""One training run shared by N processes: who encodes what, who draws which part of each batch, who writes.

The training images (after cutting windows) are dealt into N shards like
cards, shard ``s`` holding images ``s, s+N, s+2N, …``; process ``s`` encodes
and keeps the SAM embeddings of its shard only.  Every step's global batch
of ``B`` images is made of one part per shard, ``B // N`` images (one more
for the first ``B % N`` shards), drawn from a running permutation of that
shard with the shard's own random generator (seed ``seed + 1000003·s``, so
shard 0 of a one-process run draws exactly what plain training draws).

A :class:`ShardedRun` with a ``rank`` is one process of a ``torchrun``
start: g (and h) run under DistributedDataParallel, BatchNorm uses the
statistics of the global batch (:mod:`.sync_batchnorm`), every local loss is
weighted by its share of the global batch so the averaged gradients are
those of the global batch's mean loss, and the main process (rank 0) alone
validates, decides when the time limit has come and writes the model;
the others follow its decisions.  A :class:`ShardedRun` without a rank plays
all N shards in one process and concatenates their parts: the single-process
run with the same global batches, which an N-process run must match up to
floating-point rounding.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist

from ..models.checkpoint import ModelCheckpoint
from ..training.data import TrainingDataError
from ..training.output import TrainingRun, write_model
from ..training.prepared import PreparedSet
from ..training.stages import Trainer, draw_batch, index_batches
from .sync_batchnorm import restore_batchnorm, synchronise_batchnorm

__all__ = ["ShardedRun", "ShardedSet", "ShardedTrainer", "shard_seed"]

#: Seeds of the shards' generators are this far apart.
SEED_STRIDE = 1_000_003


def shard_seed(seed: int, shard: int) -> int:
    """The seed of shard ``shard``'s batch, variant and augmentation draws (shard 0: ``seed`` itself)."""
    return seed + SEED_STRIDE * shard


def shard_batch(batch: int, world_size: int, shard: int) -> int:
    """Images of shard ``shard`` in a global batch of ``batch`` split over ``world_size`` shards."""
    return batch // world_size + (shard < batch % world_size)


class ShardedSet:
    """The prepared training set as its shards: ``len()`` is the whole set's, :meth:`shard` one shard's tensors."""

    def __init__(self, parts: dict[int, PreparedSet], total: int) -> None:
        self.parts, self.total = parts, total
        self.variants = next(iter(parts.values())).variants

    def __len__(self) -> int:
        return self.total

    def shard(self, shard: int) -> PreparedSet:
        return self.parts[shard]


def _slice(data: PreparedSet, start: int, stop: int) -> PreparedSet:
    return PreparedSet(data.samples[start:stop], data.variants, data.input_size, data.images[start:stop],
                       data.targets[start:stop], data.embeddings[start:stop])


class ShardedRun:
    """This process's part of a training run over ``world_size`` shards (see the module docstring).

    Parameters
    ----------
    world_size : int
        Number of shards (processes of the real run).
    rank : int or None
        This process's rank in the initialised default process group; None
        plays every shard here, with no communication.
    device : torch.device or str
        The process's compute device (``cuda:<local rank>`` or ``cpu``).
    """

    def __init__(self, world_size: int, rank: int | None = None, device="cpu") -> None:
        if world_size < 1 or (rank is not None and not 0 <= rank < world_size):
            raise ValueError(f"need world_size >= 1 and 0 <= rank < world_size, got {world_size} and {rank}")
        self.world_size, self.rank, self.device = world_size, rank, torch.device(device)
        self.held = list(range(world_size)) if rank is None else [rank]
        self.is_main = rank is None or rank == 0
        self.communicates = rank is not None and world_size > 1
        self._comm = self.device if self.communicates and dist.get_backend() == "nccl" else torch.device("cpu")

    # --- the hooks of napari_autosam.training.engine.train ------------------------------------

    def shares(self, train: list, val: list, config) -> tuple[list, list]:
        """The training and validation samples this process encodes: its shards; validation on the main one."""
        n, w = len(train), self.world_size
        if n < w:
            raise TrainingDataError(f"{n} training images (after cutting windows) for {w} processes: each process "
                                    f"needs at least one; start fewer processes (torchrun --nproc_per_node {n})")
        smallest = min(config.batch_size, config.h_batch_size)
        if smallest < w:
            raise TrainingDataError(f"batch size {smallest} is smaller than the {w} processes that share each "
                                    f"batch; use --batch-size {w} or more")
        self._count, self._sizes = n, {s: len(train[s::w]) for s in self.held}
        own = [sample for s in self.held for sample in train[s::w]]
        return own, (list(val) if self.is_main else [])

    def joined(self, train_data: PreparedSet | None, val_data: PreparedSet | None):
        """``(ShardedSet, val_data)``, or ``(None, None)`` on every process when one was cancelled while encoding."""
        if self.any(train_data is None or val_data is None):
            return None, None
        parts, start = {}, 0
        for s in self.held:
            parts[s], start = _slice(train_data, start, start + self._sizes[s]), start + self._sizes[s]
        return ShardedSet(parts, self._count), val_data

    def trainer(self, model, config, device, cancel, val_kind: str) -> ShardedTrainer:
        self._trainer = ShardedTrainer(self, model, config, device, cancel, val_kind)
        return self._trainer

    def close(self) -> None:
        """Let go of the DistributedDataParallel wrappers (before the process group is destroyed)."""
        trainer, self._trainer = getattr(self, "_trainer", None), None
        if trainer is not None:
            trainer._wrappers.clear()

    def write_model(self, destination, model, run: TrainingRun) -> tuple[ModelCheckpoint, Path, str | None]:
        """The main process writes the model; every process returns the checkpoint, path and version written."""
        if self.communicates:
            self.close()
            restore_batchnorm(model.prompt_generator)
            restore_batchnorm(model.surrogate)
        written = write_model(destination, model, run) if self.is_main else None
        if not self.communicates:
            return written
        shared = self.from_main(None if written is None else (str(written[1]), written[2], written[0].metadata))
        if written is not None:
            return written
        path, version, metadata = shared
        return ModelCheckpoint(model.prompt_generator.eval(), model.surrogate.eval(), metadata), Path(path), version

    # --- agreement between the processes (no-ops in one process) ------------------------------

    def any(self, flag: bool) -> bool:
        """True on every process when ``flag`` is true on one of them."""
        if not self.communicates:
            return bool(flag)
        value = torch.tensor([float(bool(flag))], device=self._comm)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def main_says(self, flag: bool) -> bool:
        """The main process's ``flag``, on every process."""
        if not self.communicates:
            return bool(flag)
        value = torch.tensor([float(bool(flag))], device=self._comm)
        dist.broadcast(value, src=0)
        return bool(value.item() > 0)

    def from_main(self, obj):
        """The main process's ``obj`` (picklable), on every process."""
        if not self.communicates:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self._comm)
        return box[0]

    def mean(self, value: float) -> float:
        """The mean of ``value`` over the processes."""
        if not self.communicates:
            return value
        total = torch.tensor([float(value)], dtype=torch.float64, device=self._comm)
        dist.all_reduce(total)
        return float(total.item()) / self.world_size


class ShardedTrainer(Trainer):
    """The :class:`~napari_autosam.training.stages.Trainer` of one process of a :class:`ShardedRun`.

    Same stages, budget, validation and early stopping; it overrides only the
    seams: where a batch comes from, how a trained module is called (through
    DistributedDataParallel), the optimiser step (weighted loss, averaged loss
    value), the time limit and the cancel flag (agreed), and validation (the
    main process's scores, on every process).
    """

    def __init__(self, run: ShardedRun, model, config, device, cancel, val_kind: str) -> None:
        super().__init__(model, config, device, cancel, val_kind)
        self.run = run
        self.generators = {s: torch.Generator().manual_seed(shard_seed(config.seed, s)) for s in run.held}
        self._wrappers: dict[int, torch.nn.Module] = {}
        self._weight = 1.0
        if run.communicates:
            synchronise_batchnorm(model.prompt_generator)
            synchronise_batchnorm(model.surrogate)

    @property
    def cancelled(self) -> bool:
        return self.run.any(super().cancelled)

    def validate(self, val) -> dict:
        scores = super().validate(val) if self.run.is_main else None
        self.latest = self.run.from_main(scores)
        return self.latest

    def _past(self, deadline: float) -> bool:
        return self.run.main_says(self.run.is_main and super()._past(deadline))

    def _batches(self, n: int, batch: int) -> dict:
        w = self.run.world_size
        if self.run.communicates:  # this process's share of the global batch's mean loss
            self._weight = shard_batch(batch, w, self.run.rank) * w / batch
        return {s: index_batches(len(range(s, n, w)), shard_batch(batch, w, s), self.generators[s])
                for s in self.run.held}

    def _next_batch(self, train: ShardedSet, batches: dict, is_g: bool) -> tuple:
        parts = [draw_batch(train.shard(s), next(batches[s]), self.generators[s], self.config.augment,
                            self.device, is_g) for s in self.run.held]
        if len(parts) == 1:
            return parts[0]
        return tuple(None if tensors[0] is None else torch.cat(tensors) for tensors in zip(*parts))

    def _trained(self, module: torch.nn.Module) -> torch.nn.Module:
        if not self.run.communicates:
            return module
        wrapper = self._wrappers.get(id(module))
        if wrapper is None:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            # buffers (BatchNorm statistics) stay equal without copying: GlobalBatchNorm2d updates them alike
            wrapper = DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False)
            self._wrappers[id(module)] = wrapper
        return wrapper

    def _step(self, loss: torch.Tensor, optimizer, scaler) -> float:
        if not self.run.communicates:
            return super()._step(loss, optimizer, scaler)
        return self.run.mean(super()._step(loss * self._weight, optimizer, scaler))
