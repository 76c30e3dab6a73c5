"""Training under ``torchrun``: detected, and refused until multi-process training exists.

``torchrun --nproc_per_node N -m napari_autosam train …`` starts N copies of
the command.  Each copy would train the whole model on its own and write its
own model version, so N processes would race to write N versions.  Until
training shares its work across processes (DistributedDataParallel), the
command refuses such a start in one line and nothing is written.
"""

from __future__ import annotations

import os

__all__ = ["TorchrunEnvironment", "torchrun_environment", "refuse_multiprocess"]


class TorchrunEnvironment:
    """The process's place in a ``torchrun`` start: ``rank``, ``local_rank`` and ``world_size``."""

    def __init__(self, rank: int, local_rank: int, world_size: int) -> None:
        self.rank, self.local_rank, self.world_size = rank, local_rank, world_size


def torchrun_environment(environ=None) -> TorchrunEnvironment | None:
    """The ``torchrun`` variables of this process (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``), or None outside one."""
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ or "RANK" not in environ:
        return None
    try:
        return TorchrunEnvironment(int(environ["RANK"]), int(environ.get("LOCAL_RANK", 0)), int(environ["WORLD_SIZE"]))
    except ValueError:
        return None


def refuse_multiprocess(command: str = "train") -> None:
    """Raise a one-line :class:`~napari_autosam.cli.CommandError` when started as one of several processes."""
    env = torchrun_environment()
    if env is not None and env.world_size > 1:
        from ..cli import CommandError

        raise CommandError(f"started as process {env.rank} of {env.world_size} (torchrun --nproc_per_node "
                           f"{env.world_size}): multi-process training is not supported yet, and {env.world_size} "
                           f"processes would each write a model version; run `napari-autosam {command}` as one process")
