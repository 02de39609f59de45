"""DVC stage `curve@<k>`: `python -m caltech_transfer.evaluation.curve <k> <split seed>` trains feature extraction,
then fine-tuning from its head (LP-FT), on k training images per class of that split, and scores each on its whole
test split: the learning curve's point at k for both modes."""

import sys

from ..batches.datasets import check_shots
from ..core.cli import cli, stage_arguments
from ..core.layout import CURVE_MODES, curve_point
from ..core.params import load_params
from ..train.engine import train
from .evaluate import evaluate


@cli
def main():
    per_class, seed = stage_arguments(sys.argv, int, int)
    params = load_params("curve")
    check_shots(per_class, curve_point(CURVE_MODES[0], per_class, seed).split, params["train"]["final_fit"])
    for mode in CURVE_MODES:  # feature_extract first: finetune starts from the head it trains
        paths = curve_point(mode, per_class, seed)
        train(mode, params, paths)
        evaluate(paths.checkpoint, mode, paths, params["runtime"], **params["evaluate"])


if __name__ == "__main__":
    main()
