"""DVC stages `curve_feature_extract@<k>` and `curve_finetune@<k>`: `python stages/curve.py <mode> <k>` trains
<mode> on k training images per class and scores it on the whole test split: one learning-curve point."""

import sys

from caltech_transfer.core.cli import cli
from caltech_transfer.core.errors import UserError
from caltech_transfer.core.layout import CURVE_MODES, curve_point, stage_run
from caltech_transfer.core.params import load_params
from caltech_transfer.data.datasets import check_shots
from caltech_transfer.evaluation.evaluate import evaluate, score_on_evaluated_features
from caltech_transfer.train.engine import train


@cli
def main():
    if len(sys.argv) != 3 or sys.argv[1] not in CURVE_MODES or not sys.argv[2].isdigit():
        raise UserError(f"usage: python stages/curve.py <{'|'.join(CURVE_MODES)}> <images per class>")
    mode, per_class = sys.argv[1], int(sys.argv[2])
    params = load_params(f"curve_{mode}@{per_class}")
    paths = curve_point(mode, per_class)
    check_shots(per_class, paths.split)
    train(mode, params, paths)
    if mode == "feature_extract":  # the frozen backbone's test features are evaluate@feature_extract's
        baseline = stage_run("feature_extract")
        score_on_evaluated_features(paths.checkpoint, baseline.checkpoint, baseline.metrics, paths.split, paths.metrics)
    else:
        evaluate(paths.checkpoint, paths.split, paths.cache, paths.metrics, params["runtime"], **params["evaluate"])


if __name__ == "__main__":
    main()
