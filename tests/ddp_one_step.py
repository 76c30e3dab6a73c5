"""Started by tests/test_ddp_torchrun.py under ``torchrun --nproc_per_node 2``: one step of g, both ways.

Every process takes its shard of a global batch of 3 (2 + 1 images, so the
loss weighting of unequal shares is exercised) and makes one SGD step (lr 1:
the parameter change is minus the averaged gradient, with no optimiser
state to blur it) through the sharded trainer: DistributedDataParallel,
BatchNorm over the global batch, the weighted loss.  Process 0 then makes the
same step with the plain one-process Trainer on all 3 images and prints one
JSON line comparing the two.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import torch

from napari_autosam.distributed.ddp import training_session
from napari_autosam.distributed.sharded import ShardedSet
from napari_autosam.models.autosam import AutoSAM
from napari_autosam.progress import run
from napari_autosam.sam.registry import load_sam
from napari_autosam.training import Augmentation, TrainConfig, initial_model, samples_from_arrays
from napari_autosam.training.prepared import PreparedSet
from napari_autosam.training.stages import Trainer

BATCH = 3


def prepared_set(n: int) -> PreparedSet:
    """``n`` seeded random images, soft targets and SAM embeddings (the same in every process)."""
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(n)]
    masks = [rng.random((64, 64)) > 0.5 for _ in range(n)]
    g = torch.Generator().manual_seed(7)
    return PreparedSet(
        samples_from_arrays(images, masks), ("identity",), 64,
        [[torch.from_numpy(im).permute(2, 0, 1).contiguous()] for im in images],
        [[torch.randint(0, 256, (1, 256, 256), generator=g, dtype=torch.uint8)] for _ in range(n)],
        [[torch.randn(256, 64, 64, generator=g) * 0.1] for _ in range(n)])


def one_step(trainer: Trainer, train) -> tuple[float, list[torch.Tensor], list[torch.Tensor]]:
    """Loss, parameter change and BatchNorm statistics after one SGD step of g on ``train``'s global batch."""
    g = trainer.model.prompt_generator
    trainer.model.train()
    params = list(g.parameters())
    before = [p.detach().clone() for p in params]
    batches = trainer._batches(len(train), BATCH)
    tensors = trainer._next_batch(train, batches, True)
    loss = trainer._step(trainer._g_loss(*tensors), torch.optim.SGD(params, lr=1.0), None)
    stats = [b.detach().clone() for name, b in g.named_buffers() if name.endswith(("running_mean", "running_var"))]
    return loss, [p.detach() - b for p, b in zip(params, before)], stats


def main() -> None:
    config = TrainConfig(generator="hardnet_small", input_size=64, batch_size=BATCH, variants=("identity",),
                         augment=Augmentation.none()).resolved("cpu")
    sam = run(load_sam("tiny", device="cpu"))
    data = prepared_set(BATCH)
    with training_session("cpu") as shared:
        start = initial_model(config, device="cpu")
        reference = copy.deepcopy(start)  # before the sharded trainer swaps in its BatchNorm
        trainer = shared.trainer(AutoSAM(sam, start.prompt_generator, start.surrogate), config, torch.device("cpu"),
                                 None, "given")
        mine = {shared.rank: PreparedSet(data.samples[shared.rank::2], data.variants, 64, data.images[shared.rank::2],
                                         data.targets[shared.rank::2], data.embeddings[shared.rank::2])}
        loss, change, stats = one_step(trainer, ShardedSet(mine, BATCH))
        if shared.rank != 0:
            return
        plain = Trainer(AutoSAM(sam, reference.prompt_generator, reference.surrogate), config, torch.device("cpu"), None)
        ref_loss, ref_change, ref_stats = one_step(plain, data)
        largest = max(float(c.abs().max()) for c in ref_change)
        print(json.dumps({
            "loss": loss, "reference_loss": ref_loss,
            "largest_change": largest,
            "change_difference": max(float((a - b).abs().max()) for a, b in zip(change, ref_change)),
            "stats_difference": max(float((a - b).abs().max()) for a, b in zip(stats, ref_stats)),
            "stats_count": len(stats),
        }), flush=True)


if __name__ == "__main__":
    main()
