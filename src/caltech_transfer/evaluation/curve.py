"""DVC stage `curve@<k>`: `python -m caltech_transfer.evaluation.curve <k>` trains feature extraction, then
fine-tuning from its head (LP-FT), on k training images per class, and scores each on the whole test split: the
learning curve's point at k for both modes."""

import sys

from ..batches.datasets import check_shots
from ..core.cli import cli
from ..core.errors import UserError
from ..core.layout import CURVE_MODES, curve_point
from ..core.params import load_params
from ..train.engine import train
from .evaluate import evaluate


@cli
def main():
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        raise UserError("usage: python -m caltech_transfer.evaluation.curve <images per class>")
    per_class = int(sys.argv[1])
    params = load_params(f"curve@{per_class}")
    check_shots(per_class, curve_point(CURVE_MODES[0], per_class).split)
    for mode in CURVE_MODES:  # feature_extract first: finetune starts from the head it trains
        paths = curve_point(mode, per_class)
        train(mode, params, paths)
        evaluate(
            paths.checkpoint, mode, paths.split, paths.cache, paths.metrics, params["runtime"], **params["evaluate"]
        )


if __name__ == "__main__":
    main()
