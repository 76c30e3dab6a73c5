"""``napari-autosam train`` whose process of rank 1 runs out of memory at its second step (for tests/test_ddp_torchrun.py)."""

from __future__ import annotations

import os
import sys

from napari_autosam.cli import main
from napari_autosam.distributed.sharded import ShardedTrainer

if os.environ.get("RANK") == "1":
    steps = []
    original = ShardedTrainer._step

    def _step(self, loss, optimizer, scaler):
        steps.append(1)
        if len(steps) == 2:
            raise MemoryError
        return original(self, loss, optimizer, scaler)

    ShardedTrainer._step = _step

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
