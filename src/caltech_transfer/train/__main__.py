"""DVC stages `train_finetune@<seed>`, `train_feature_extract@<seed>`, `train_scratch`: `python -m
caltech_transfer.train <mode> <split seed>`."""

import sys

from ..core.cli import cli, stage_arguments
from ..core.layout import MODES, stage_run
from ..core.params import load_params
from .distributed import relaunch
from .engine import train


@cli
def main():
    mode, seed = stage_arguments(sys.argv, MODES, int)
    params = load_params(f"train_{mode}")
    relaunch("caltech_transfer.train", params["train"]["processes"], {mode: params["train"][mode]["batch_size"]})
    train(mode, params, stage_run(mode, seed))


if __name__ == "__main__":
    main()
