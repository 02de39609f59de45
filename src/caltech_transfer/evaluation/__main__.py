"""DVC stages `evaluate@<seed>-<mode>` and `evaluate_scratch`: `python -m caltech_transfer.evaluation <mode> <split
seed>` scores the mode's model of that split seed on its test split."""

import sys

from ..core.cli import cli, stage_arguments
from ..core.layout import MODES, stage_run
from ..core.params import load_params
from .evaluate import evaluate


@cli
def main():
    mode, seed = stage_arguments(sys.argv, MODES, int)
    p = load_params("evaluate")
    paths = stage_run(mode, seed)
    evaluate(paths.checkpoint, mode, paths, p["runtime"], **p["evaluate"])


if __name__ == "__main__":
    main()
