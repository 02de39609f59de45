"""DVC stage `evaluate@<mode>`: `python -m caltech_transfer.evaluation <mode>` scores models/<mode>.pt on the
test split."""

import sys

from ..core.cli import cli, stage_argument
from ..core.layout import MODES, stage_run
from ..core.params import load_params
from .evaluate import evaluate


@cli
def main():
    mode = stage_argument(sys.argv, MODES)
    p = load_params(f"evaluate@{mode}")
    paths = stage_run(mode)
    evaluate(paths.checkpoint, mode, paths.split, paths.cache, paths.metrics, p["runtime"], **p["evaluate"])


if __name__ == "__main__":
    main()
