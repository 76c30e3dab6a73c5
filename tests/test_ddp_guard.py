"""``napari-autosam train`` under ``torchrun`` with several processes: refused in one line, no version written."""

from __future__ import annotations

import shutil
import subprocess
import sys

from napari_autosam.cli import main
from napari_autosam.data.synthetic import write_dataset
from napari_autosam.distributed.ddp import torchrun_environment


def test_torchrun_environment_is_read_from_its_variables():
    assert torchrun_environment({}) is None
    env = torchrun_environment({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"})
    assert (env.rank, env.local_rank, env.world_size) == (1, 1, 2)
    assert torchrun_environment({"RANK": "x", "WORLD_SIZE": "2"}) is None


def test_one_torchrun_process_trains_as_usual_and_two_are_refused(tmp_path, monkeypatch, capsys):
    images, masks = write_dataset(tmp_path / "data", 2, (64, 64), seed=3)
    argv = ["train", "--images", str(images), "--masks", str(masks), "--out", str(tmp_path / "models"), "--sam", "tiny",
            "--epochs", "1", "--h-epochs", "0", "--input-size", "64", "--variants", "identity", "--device", "cpu"]
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "process 0 of 2" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "models").exists()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert main(argv) == 0 and [p.name for p in (tmp_path / "models").glob("v*.safetensors")] == ["v0001.safetensors"]


def test_torchrun_with_two_processes_writes_nothing(tmp_path):
    torchrun = shutil.which("torchrun") or str(__import__("pathlib").Path(sys.executable).with_name("torchrun"))
    images, masks = write_dataset(tmp_path / "data", 2, (64, 64), seed=3)
    done = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", "0",
                           "-m", "napari_autosam", "train", "--images", str(images), "--masks", str(masks), "--out",
                           str(tmp_path / "models"), "--sam", "tiny", "--device", "cpu"],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode != 0
    assert done.stderr.count("multi-process training is not supported yet") == 2
    assert not (tmp_path / "models").exists()
