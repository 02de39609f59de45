"""DVC stage `evaluate@<mode>`: `python stages/evaluate.py <mode>` scores models/<mode>.pt on the test split."""

import sys

from caltech_transfer.core.cli import cli, mode_argument
from caltech_transfer.core.layout import stage_run
from caltech_transfer.core.params import load_params
from caltech_transfer.evaluation.evaluate import evaluate


@cli
def main():
    mode = mode_argument(sys.argv)
    p = load_params(f"evaluate@{mode}")
    paths = stage_run(mode)
    evaluate(paths.checkpoint, paths.split, paths.cache, paths.metrics, p["runtime"], **p["evaluate"])


if __name__ == "__main__":
    main()
