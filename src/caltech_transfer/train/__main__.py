"""DVC stages `train_finetune`, `train_scratch`, `train_feature_extract`: `python -m caltech_transfer.train <mode>`."""

import sys

from ..core.cli import cli, stage_argument
from ..core.layout import MODES, stage_run
from ..core.params import load_params
from .distributed import relaunch
from .engine import train


@cli
def main():
    mode = stage_argument(sys.argv, MODES)
    params = load_params(f"train_{mode}")
    relaunch("caltech_transfer.train", params["train"]["processes"], {mode: params["train"][mode]["batch_size"]})
    train(mode, params, stage_run(mode))


if __name__ == "__main__":
    main()
