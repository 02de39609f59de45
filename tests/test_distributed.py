"""Training with DDP under torchrun: 2 processes with gloo on the CPU, on synthetic data."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from caltech_transfer.core.params import read_yaml, set_dotted
from caltech_transfer.model.factory import build_model
from caltech_transfer.train.distributed import ShardedSampler, sync_batchnorm
from conftest import LEARNS, PROJECT, write_inputs

EPOCHS = LEARNS["train.finetune.epochs"]  # at batch 4, 2 per process: the effective batch is what is compared


@pytest.mark.parametrize("count", [24, 25])
def test_shards_are_disjoint_and_cover_the_set(count):
    generator = torch.Generator().manual_seed(3)
    shards = []
    for rank in range(2):
        generator.manual_seed(3)  # as the engine seeds it each epoch, the same on every process
        shards.append(list(ShardedSampler(count, generator, shuffle=True, rank=rank, size=2)))
    assert len(shards[0]) == len(shards[1]) == -(-count // 2)  # the same number of steps on each process
    assert set(shards[0]) | set(shards[1]) == set(range(count))
    overlap = [i for i in shards[0] if i in shards[1]]
    assert len(overlap) == len(shards[0]) * 2 - count  # only the padding of an odd count repeats an index
    evaluation = [list(ShardedSampler(count, rank=rank, size=2)) for rank in range(2)]
    assert sorted(evaluation[0] + evaluation[1]) == list(range(count))


@pytest.mark.parametrize("arch", ["timm/tf_efficientnet_lite0", "resnet18", "alexnet"])
def test_synchronised_batch_norm_computes_what_the_network_computed(arch):
    """Several GPUs train the network one GPU trains: the conversion keeps every layer's function (timm's norm layers
    apply their activation inside), checked in eval mode, where SyncBatchNorm runs on the CPU too."""
    torch.manual_seed(0)
    model, _ = build_model(arch, 5, input_size=64)
    for module in model.modules():  # statistics of their own, so that each norm layer's function shows
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    model.eval()
    with torch.no_grad():
        expected = model(images)
        converted = sync_batchnorm(model).eval()
        assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules()) or arch == "alexnet"
        assert torch.equal(converted(images), expected)


MODELS, RUN = Path("models/seeds/0"), Path("metrics/seeds/0/finetune")  # where train_finetune@0 writes


def stage_dir(small_dataset, root, **overrides):
    shutil.copytree(small_dataset / "split", root / "data" / "split" / "0")
    shutil.copytree(small_dataset / "cache", root / "data" / "cache")
    shutil.copy(PROJECT / "dvc.yaml", root)
    params = read_yaml(PROJECT / "tests" / "params.yaml")
    for dotted, value in {**LEARNS, **overrides}.items():
        set_dotted(params, dotted, value)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    write_inputs(root / "data" / "cache", root / "data", params, params["model"]["weights"])
    return root


def train_stage(folder, **popen):
    return subprocess.Popen(
        [sys.executable, "-m", "caltech_transfer.train", "finetune", "0"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def finished(proc):
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    return out


def summary(folder):
    return read_yaml(folder / RUN / "train" / "metrics.json")


def test_two_processes_learn_like_one_with_the_same_effective_batch(small_dataset, tmp_path):
    single = stage_dir(small_dataset, tmp_path / "single")
    double = stage_dir(small_dataset, tmp_path / "double", **{"train.processes": 2})
    finished(train_stage(single))
    out = finished(train_stage(double))
    assert out.count(f"finetune epoch {EPOCHS}:") == 1  # one process reports
    one, two = summary(single), summary(double)
    assert two["best_val_accuracy"] >= 0.9  # chance is 1/3
    # Same global batches (batch norm is per process on the CPU, and the random crops differ), so the runs end within
    # 0.1 of each other in validation accuracy (the synthetic validation split has 12 images).
    assert abs(two["best_val_accuracy"] - one["best_val_accuracy"]) <= 0.1
    assert sorted(p.name for p in (double / MODELS).iterdir()) == ["finetune.pt"]
    assert sorted(p.name for p in (double / RUN).iterdir()) == ["history.tsv", "train"]
    assert summary(double)["step"] == EPOCHS  # DVCLive's files: one process wrote them
    history = (double / RUN / "history.tsv").read_text().splitlines()
    assert len(history) == 1 + EPOCHS


def test_an_interrupted_two_process_run_resumes(small_dataset, tmp_path):
    folder = stage_dir(small_dataset, tmp_path, **{"train.processes": 2, "train.finetune.epochs": 8})
    resume_file = folder / MODELS / "finetune.resume.pt"
    proc = train_stage(folder, start_new_session=True)
    deadline = time.time() + 600
    while not (resume_file.exists() and torch.load(resume_file, weights_only=True)["state"]["epoch"] >= 2):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode != 0 and not (folder / MODELS / "finetune.pt").exists()
    stopped_after = torch.load(resume_file, weights_only=True)["state"]["epoch"]
    out = finished(train_stage(folder))
    assert f"resuming after epoch {stopped_after}" in out
    history = (folder / RUN / "history.tsv").read_text().splitlines()
    assert [int(line.split("\t")[0]) for line in history[1:]] == list(range(1, 9))


def test_feature_extraction_on_two_processes_trains_the_head_as_one_does(small_dataset, tmp_path):
    """Each process reads the features stage's features and trains the head on its share of every batch: as on one
    process (no batch norm, no augmentation: the same numbers up to float rounding)."""
    settings = {"train.feature_extract.epochs": 5, "train.feature_extract.batch_size": 4}
    single = stage_dir(small_dataset, tmp_path / "single", **settings)
    double = stage_dir(small_dataset, tmp_path / "double", **settings, **{"train.processes": 2})
    for folder in (single, double):
        proc = subprocess.Popen(
            [sys.executable, "-m", "caltech_transfer.train", "feature_extract", "0"],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        finished(proc)
    heads = [
        torch.load(f / MODELS / "feature_extract.pt", weights_only=True)["state_dict"]["head.weight"]
        for f in (single, double)
    ]
    assert torch.allclose(heads[0], heads[1], atol=1e-4)
