"""DVC stage `curve@<k>-<seed>`: `python -m caltech_transfer.evaluation.curve <k> <split seed>` trains feature
extraction, then fine-tuning from its head (LP-FT), on k training images per class of that split, and scores each on
its whole test split: the learning curve's point at k for both modes on that seed.

Each point trains for a budget of optimizer steps (`curve.<mode>_steps`), the same at every k: the recipe's epochs
become the number of passes over the k images per class that makes that budget."""

import math
import sys

from ..batches.datasets import check_shots, last_batch_of_one
from ..core.cli import cli, stage_arguments
from ..core.layout import CURVE_MODES, curve_point
from ..core.params import load_params
from ..data.split import read_classes
from ..train.engine import train
from .evaluate import evaluate


def batches_per_epoch(images, batch_size):
    """Optimizer steps in one pass over `images` (the training loader leaves out a last batch of one)."""
    return math.ceil(images / batch_size) - last_batch_of_one(images, batch_size)


def budget_epochs(steps, images, batch_size):
    """The whole passes over `images` closest to `steps` optimizer steps, at least one."""
    return max(1, round(steps / batches_per_epoch(images, batch_size)))


def point_params(params, mode, images):
    """The stage's params with the mode's epochs set to its step budget on `images` training images."""
    recipe = params["train"][mode]
    epochs = budget_epochs(params["curve"][f"{mode}_steps"], images, recipe["batch_size"])
    return {**params, "train": {**params["train"], mode: {**recipe, "epochs": epochs}}}


@cli
def main():
    per_class, seed = stage_arguments(sys.argv, int, int)
    params = load_params("curve")
    split = curve_point(CURVE_MODES[0], per_class, seed).split
    check_shots(per_class, split, params["train"]["final_fit"])
    images = per_class * len(read_classes(split))
    for mode in CURVE_MODES:  # feature_extract first: finetune starts from the head it trains
        paths = curve_point(mode, per_class, seed)
        train(mode, point_params(params, mode, images), paths)
        evaluate(paths.checkpoint, mode, paths, params["runtime"], **params["evaluate"])


if __name__ == "__main__":
    main()
