"""DVC stages `train_finetune`, `train_scratch`, `train_feature_extract`: `python stages/train.py <mode>`."""

import sys

from caltech_transfer.core.cli import cli, mode_argument
from caltech_transfer.core.layout import stage_run
from caltech_transfer.core.params import load_params
from caltech_transfer.train.distributed import relaunch
from caltech_transfer.train.engine import train


@cli
def main():
    mode = mode_argument(sys.argv)
    params = load_params(f"train_{mode}")
    relaunch(params["train"]["processes"], {mode: params["train"][mode]["batch_size"]})  # torchrun, if asked
    train(mode, params, stage_run(mode))


if __name__ == "__main__":
    main()
