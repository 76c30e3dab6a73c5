"""Multi-process training, in one process: the torchrun variables, shards, BatchNorm swap, one shard = plain training."""

from __future__ import annotations

import pytest
import torch

from napari_autosam.cli import main
from napari_autosam.data.synthetic import make_nuclei_dataset, write_dataset
from napari_autosam.distributed.ddp import torchrun_environment, training_session
from napari_autosam.distributed.sharded import ShardedRun, shard_batch
from napari_autosam.distributed.sync_batchnorm import GlobalBatchNorm2d, restore_batchnorm, synchronise_batchnorm
from napari_autosam.models.prompt_generator import build_prompt_generator
from napari_autosam.progress import run
from napari_autosam.sam.cache import EmbeddingCache
from napari_autosam.training import TrainConfig, TrainingDataError, samples_from_arrays, train

SMALL = {"generator": "hardnet_small", "input_size": 64, "batch_size": 2, "variants": ("identity",),
         "steps": 2, "h_steps": 1, "patience": None}


def _samples(n, seed=1):
    return samples_from_arrays(*zip(*make_nuclei_dataset(n, (64, 64), seed=seed)))


def test_torchrun_environment_is_read_from_its_variables():
    assert torchrun_environment({}) is None
    env = torchrun_environment({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"})
    assert (env.rank, env.local_rank, env.world_size, str(env)) == (1, 1, 2, "process 1 of 2")
    assert torchrun_environment({"RANK": "x", "WORLD_SIZE": "2"}) is None
    with training_session(environ={"RANK": "0", "WORLD_SIZE": "1"}) as shared:
        assert shared is None  # one process: plain training, no process group


def test_a_global_batch_is_dealt_over_the_shards():
    assert [shard_batch(4, 2, s) for s in range(2)] == [2, 2]
    assert [shard_batch(5, 3, s) for s in range(3)] == [2, 2, 1]
    assert sum(shard_batch(10, 4, s) for s in range(4)) == 10


def test_batchnorm_is_swapped_and_restored_with_its_state():
    g = build_prompt_generator("hardnet_small", input_size=64)
    plain = {k: v.clone() for k, v in g.state_dict().items()}
    synchronise_batchnorm(g)
    norms = [m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(type(m) is GlobalBatchNorm2d for m in norms)
    x = torch.randn(2, 3, 64, 64)
    g.train()
    with torch.no_grad():
        synced = g(x)  # no process group: GlobalBatchNorm2d is plain batch norm
    restore_batchnorm(g)
    assert all(type(m) is torch.nn.BatchNorm2d for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert g.state_dict().keys() == plain.keys()
    fresh = build_prompt_generator("hardnet_small", input_size=64)
    fresh.load_state_dict(plain)
    fresh.train()
    with torch.no_grad():
        assert torch.equal(fresh(x), synced)
    assert all(torch.equal(g.state_dict()[k], fresh.state_dict()[k]) for k in plain)  # same running statistics


def test_one_shard_trains_exactly_like_one_process(tiny_sam, tmp_path):
    cache = EmbeddingCache(tiny_sam, tmp_path / "emb")
    config = TrainConfig(**SMALL)
    plain = run(train(tiny_sam, _samples(2), config=config, val_samples=_samples(1, 2), cache=cache,
                      out=tmp_path / "plain.safetensors"))
    shard = run(train(tiny_sam, _samples(2), config=config, val_samples=_samples(1, 2), cache=cache,
                      out=tmp_path / "shard.safetensors", distributed=ShardedRun(1)))
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in plain.history]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in shard.history]
    a, b = plain.model.prompt_generator.state_dict(), shard.model.prompt_generator.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_shards_need_an_image_and_a_batch_item_each(tiny_sam, tmp_path):
    with pytest.raises(TrainingDataError, match="1 training images .* for 2 processes"):
        run(train(tiny_sam, _samples(1), config=TrainConfig(**SMALL), val_samples=_samples(1, 2),
                  out=tmp_path / "a.safetensors", distributed=ShardedRun(2)))
    with pytest.raises(TrainingDataError, match="batch size 1 is smaller than the 2 processes"):
        run(train(tiny_sam, _samples(2), config=TrainConfig(**{**SMALL, "batch_size": 1}),
                  val_samples=_samples(1, 2), out=tmp_path / "b.safetensors", distributed=ShardedRun(2)))
    assert not list(tmp_path.glob("*.safetensors"))


def test_one_torchrun_process_trains_as_usual(tmp_path, monkeypatch):
    images, masks = write_dataset(tmp_path / "data", 2, (64, 64), seed=3)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    argv = ["train", "--images", str(images), "--masks", str(masks), "--out", str(tmp_path / "models"), "--sam", "tiny",
            "--steps", "2", "--h-steps", "0", "--input-size", "64", "--variants", "identity", "--device", "cpu"]
    assert main(argv) == 0
    assert [p.name for p in (tmp_path / "models").glob("v*.safetensors")] == ["v0001.safetensors"]
