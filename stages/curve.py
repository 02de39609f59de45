"""DVC stages `curve_feature_extract@<k>` and `curve_finetune@<k>`: `python stages/curve.py <mode> <k>` trains
<mode> on k training images per class and scores it on the whole test split: one learning-curve point."""
import sys

from caltech_transfer.engine import train
from caltech_transfer.errors import UserError, cli
from caltech_transfer.evaluate import evaluate
from caltech_transfer.learning_curve import CURVE_MODES, check_shots, point_paths, score_on_evaluated_features
from caltech_transfer.params import load_params


@cli
def main():
    if len(sys.argv) != 3 or sys.argv[1] not in CURVE_MODES or not sys.argv[2].isdigit():
        raise UserError(f"usage: python stages/curve.py <{'|'.join(CURVE_MODES)}> <images per class>")
    mode, per_class = sys.argv[1], int(sys.argv[2])
    params = load_params(f"curve_{mode}@{per_class}")
    paths = point_paths(mode, per_class)
    check_shots(per_class, paths.split)
    train(mode, params, paths)
    if mode == "feature_extract":  # the frozen backbone's test features are evaluate@feature_extract's
        score_on_evaluated_features(paths.checkpoint, "models/feature_extract.pt", "metrics/feature_extract",
                                    paths.split, paths.metrics)
    else:
        evaluate(paths.checkpoint, paths.split, paths.cache, paths.metrics, params["runtime"],
                 params["evaluate"]["batch_size"], params["evaluate"]["workers"])


if __name__ == "__main__":
    main()
