"""``napari-autosam train`` under ``torchrun``: join the other processes, train this one's share, leave cleanly.

``torchrun --nproc_per_node N -m napari_autosam train …`` starts N copies of
the command with ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``
and ``MASTER_PORT`` set.  :func:`training_session` turns that into a
:class:`~napari_autosam.distributed.sharded.ShardedRun`: it joins the process
group (NCCL when the process trains on a GPU, ``cuda:<LOCAL_RANK>``; gloo on
the CPU), and always destroys it again, also after an error.  Every
collective has a time limit (:data:`TIMEOUT_ENV`, default
:data:`DEFAULT_TIMEOUT` seconds), so a process whose peer died or stopped
answering ends with one line instead of waiting for ever.  One process, or
no ``torchrun``, trains as before.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
import re

__all__ = ["DEFAULT_TIMEOUT", "TIMEOUT_ENV", "TorchrunEnvironment", "quiet_bar", "torchrun_environment",
           "training_session"]

#: Seconds one collective (or the start) may wait for the other processes.
DEFAULT_TIMEOUT = 1800.0
#: Environment variable overriding :data:`DEFAULT_TIMEOUT`.
TIMEOUT_ENV = "NAPARI_AUTOSAM_DDP_TIMEOUT"


class TorchrunEnvironment:
    """The process's place in a ``torchrun`` start: ``rank``, ``local_rank`` and ``world_size``."""

    def __init__(self, rank: int, local_rank: int, world_size: int) -> None:
        self.rank, self.local_rank, self.world_size = rank, local_rank, world_size

    def __str__(self) -> str:
        return f"process {self.rank} of {self.world_size}"


def torchrun_environment(environ=None) -> TorchrunEnvironment | None:
    """The ``torchrun`` variables of this process (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``), or None outside one."""
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ or "RANK" not in environ:
        return None
    try:
        return TorchrunEnvironment(int(environ["RANK"]), int(environ.get("LOCAL_RANK", 0)), int(environ["WORLD_SIZE"]))
    except ValueError:
        return None


def _timeout(environ) -> float:
    from ..jobs.errors import CommandError

    text = environ.get(TIMEOUT_ENV, "").strip()
    try:
        value = float(text) if text else DEFAULT_TIMEOUT
    except ValueError:
        value = -1.0
    if not value > 0:
        raise CommandError(f"{TIMEOUT_ENV}={text!r}: expected a positive number of seconds")
    return value


def _process_device(device: str | None, env: TorchrunEnvironment):
    """``cuda:<local rank>`` when the run is on CUDA, else the CPU (MPS cannot be shared by processes)."""
    import torch

    from ..device import pick_device
    from ..jobs.errors import CommandError

    chosen = pick_device(device)
    if chosen.type == "cuda":
        count = torch.cuda.device_count()
        if env.local_rank >= count:
            raise CommandError(f"{env}: LOCAL_RANK {env.local_rank} but only {count} GPUs are visible; "
                               f"start at most {count} processes per node (torchrun --nproc_per_node {count})")
        return torch.device("cuda", env.local_rank)
    if chosen.type != "cpu" and device not in (None, "", "auto"):
        raise CommandError(f"--device {device}: training with several processes runs on CUDA GPUs or the CPU")
    return torch.device("cpu")


def _peer_failure(exc: BaseException) -> bool:
    """True for an error of the process group itself (a peer gone, a timeout), not of this process's work."""
    import torch.distributed as dist

    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        word in text for word in ("Connection closed by peer", "Connection reset", "Timed out", "timed out",
                                  "Gloo", "gloo", "NCCL", "Broken pipe"))


def _first_sentence(exc: BaseException) -> str:
    """``Connection closed by peer [127.0.0.1]:17301`` out of a c10d/gloo message (no source location)."""
    text = re.sub(r"^\[[^\]]*\]\s*", "", (str(exc).splitlines() or [""])[0]).strip()
    return (text.split(". ")[0] or type(exc).__name__)[:160]


@contextlib.contextmanager
def training_session(device: str | None = None, environ=None):
    """This process's :class:`~.sharded.ShardedRun` under ``torchrun`` with several processes, else None.

    Errors leave the block as one :class:`~napari_autosam.jobs.errors.CommandError`
    line naming the process (``process 1 of 2: …``); the process group is
    destroyed on the way out in every case.
    """
    environ = os.environ if environ is None else environ
    env = torchrun_environment(environ)
    if env is None or env.world_size <= 1:
        yield None
        return
    import torch
    import torch.distributed as dist

    from ..jobs.errors import CommandError, error_message
    from .sharded import ShardedRun

    timeout = _timeout(environ)
    where = f"{environ.get('MASTER_ADDR', '?')}:{environ.get('MASTER_PORT', '?')}"
    try:
        chosen = _process_device(device, env)
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo", rank=env.rank,
                                world_size=env.world_size, timeout=datetime.timedelta(seconds=timeout))
    except CommandError:
        raise
    except Exception as exc:  # noqa: BLE001  rendezvous failures come in many types
        raise CommandError(f"{env}: could not join the other training processes at {where} within "
                           f"{timeout:g} s ({_first_sentence(exc)})") from exc
    run = ShardedRun(env.world_size, env.rank, chosen)
    try:
        yield run
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001  every error becomes the one line of this process
        if _peer_failure(exc):
            raise CommandError(f"{env}: stopped because another training process failed or did not answer "
                               f"within {timeout:g} s ({_first_sentence(exc)})") from exc
        raise CommandError(f"{env}: {error_message(exc)}") from exc
    finally:
        run.close()
        gc.collect()  # wrappers in reference cycles go before the group they use
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


class _QuietBar:
    """A stand-in for the progress bar on processes other than the main one: runs the task, shows nothing."""

    def run(self, task):
        from ..progress import run

        return run(task)


def quiet_bar() -> _QuietBar:
    """What the non-main processes drive their tasks with (progress is shown by rank 0 only)."""
    return _QuietBar()
