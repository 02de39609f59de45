"""The learning curve's nested subsets, a point's training data, and the seeds' spread."""
import statistics
from pathlib import Path

import pytest
import torch

from caltech_transfer import learning_curve, spread
from caltech_transfer.data import CachedImages, nested_subset
from caltech_transfer.engine import Paths
from caltech_transfer.errors import UserError
from caltech_transfer.models import build_model
from caltech_transfer.modes import loaders
from caltech_transfer.runtime import Runtime
from caltech_transfer.split import read_manifest
from conftest import stage_params


def test_subsets_are_nested_and_hold_k_images_of_every_class(small_dataset):
    rows = read_manifest(small_dataset / "split" / "train.csv")
    subsets = {k: nested_subset(rows, k) for k in (1, 3, 5, 8)}
    for k, chosen in subsets.items():
        classes = [rows[i][1] for i in chosen]
        assert {classes.count(name) for name in set(classes)} == {k} and len(set(classes)) == 3
    assert set(subsets[1]) < set(subsets[3]) < set(subsets[5]) < set(subsets[8])
    assert nested_subset(rows, 3) == subsets[3]  # the same images every time
    assert subsets[8] == list(range(len(rows)))  # the whole pool


def test_a_point_trains_on_its_subset_only(small_dataset, tmp_path):
    full = CachedImages(small_dataset / "cache", small_dataset / "split", "train")
    part = CachedImages(small_dataset / "cache", small_dataset / "split", "train", per_class=2)
    assert len(part) == 6 and part.nbytes * len(full) == full.nbytes * len(part)
    position = {path: i for i, path in enumerate(full.paths)}
    for i in range(len(part)):  # the same pixels and label as that image in the whole split
        j = position[part.paths[i]]
        assert torch.equal(part[i][0], full[j][0]) and part[i][1] == full[j][1]

    params = stage_params("curve_finetune@2")
    paths = Paths(small_dataset / "split", small_dataset / "cache", tmp_path / "m.pt", tmp_path, tmp_path,
                  train_per_class=2)
    model, prep = build_model("resnet18", "none", 3, input_size=32)
    _, train_batches, val_batches = loaders("finetune", model, prep, params, paths, Runtime(params["runtime"]),
                                            torch.Generator())
    assert len(train_batches.dataset) == 6 and len(val_batches.dataset) == 12  # validation stays whole


def test_k_must_be_below_the_training_pool(small_dataset):
    learning_curve.check_shots(7, small_dataset / "split")
    with pytest.raises(UserError, match="not below the training pool of 8"):
        learning_curve.check_shots(8, small_dataset / "split")


def run(seed, top1, lr=1e-4):
    params = {"split": {"seed": seed, "scheme": "standard"}, "train": {"finetune_lr": lr}}
    metrics = {"metrics/finetune/test.json": {"top1_accuracy": top1, "top5_accuracy": 1.0,
                                              "mean_per_class_accuracy": top1 - 0.01}}
    return params, metrics


def test_spread_over_seeds_of_otherwise_equal_runs(tmp_path):
    reference = run(0, 0.0)[0]
    runs = [run(0, 0.90), run(1, 0.92), run(2, 0.95), run(1, 0.10, lr=1e-3), run(2, 0.99)]  # last: a rerun of seed 2
    table = spread.spread(runs, reference)
    assert table["seeds"] == [0, 1, 2] and "feature_extract" not in table
    top1 = table["finetune"]["top1_accuracy"]
    assert top1["mean"] == pytest.approx(statistics.mean([0.90, 0.92, 0.95]))
    assert top1["std"] == pytest.approx(statistics.stdev([0.90, 0.92, 0.95]))
    assert "| finetune | 0.9233 ± 0.0252 |" in spread.markdown(table)

    stale = {"metrics/scratch/test.json": {k: 0.5 for k in spread.METRICS}}  # seed 0's file, carried unchanged
    table = spread.spread([(p, {**m, **stale}) for p, m in runs], reference)
    assert "scratch" not in table and table["finetune"]["top1_accuracy"]["std"] == top1["std"]

    path = tmp_path / "seeds.json"
    spread.write_json(path, table)
    assert spread.seeds_for(path, reference) == table
    assert spread.seeds_for(path, run(7, 0.0)[0]) == table  # another seed of the same params
    assert spread.seeds_for(path, {"split": {"seed": 0, "scheme": "standard"}}) == table  # a stage's own sections
    assert spread.seeds_for(path, run(0, 0.0, lr=1e-3)[0]) == {}  # other params: the table does not apply
    assert spread.seeds_for(tmp_path / "absent.json", reference) == {}
