"""The learning curve's nested subsets and a point's training data."""

import pytest
import torch

from caltech_transfer.batches.datasets import CachedImages, check_shots, nested_subset
from caltech_transfer.core.errors import UserError
from caltech_transfer.core.layout import RunPaths
from caltech_transfer.data.split import read_manifest
from caltech_transfer.evaluation.curve import budget_epochs, point_params
from caltech_transfer.model.factory import build_model
from caltech_transfer.train.modes import loaders
from caltech_transfer.train.runtime import Runtime
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

    params = stage_params("curve")
    paths = RunPaths(
        small_dataset / "split",
        small_dataset / "cache",
        tmp_path / "pretrained.pt",
        tmp_path / "features",
        tmp_path / "m.pt",
        tmp_path,
        tmp_path,
        train_per_class=2,
    )
    model, prep = build_model("resnet18", 3, input_size=32)
    _, train_batches, val_batches = loaders(
        "finetune", model, prep, params, paths, Runtime(params["runtime"]), torch.Generator()
    )
    assert len(train_batches.dataset) == 6 and len(val_batches.dataset) == 12  # validation stays whole


@pytest.mark.parametrize("final_fit, pool", [(False, 8), (True, 12)])  # the final fit's pool takes in val's 4
def test_k_must_be_within_the_training_pool(small_dataset, final_fit, pool):
    check_shots(pool, small_dataset / "split", final_fit)
    check_shots(1, small_dataset / "split", final_fit)
    for k in (0, pool + 1):
        with pytest.raises(UserError, match=f"curve.shots: {k} images per class is not between 1 and {pool}, "):
            check_shots(k, small_dataset / "split", final_fit)


@pytest.mark.parametrize(
    "images, batch_size, steps, epochs",
    [
        (102, 32, 100, 25),  # 1 image per class: 4 batches a pass
        (3060, 32, 100, 1),  # the whole pool: 96 batches a pass
        (33, 32, 10, 10),  # a last batch of one is left out: 1 batch a pass
        (3060, 32, 10, 1),  # at least one pass
    ],
)
def test_every_point_gets_about_the_same_optimizer_steps(images, batch_size, steps, epochs):
    assert budget_epochs(steps, images, batch_size) == epochs
    params = stage_params("curve", **{"curve.finetune_steps": steps, "train.finetune.batch_size": batch_size})
    recipe = point_params(params, "finetune", images)["train"]["finetune"]
    assert recipe["epochs"] == epochs and params["train"]["finetune"]["epochs"] == 10  # the stage's own unchanged
