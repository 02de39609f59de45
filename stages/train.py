"""DVC stages `train_finetune`, `train_scratch`, `train_feature_extract`: `python stages/train.py <mode>`."""
import sys

from caltech_transfer.distributed import relaunch
from caltech_transfer.engine import Paths, train
from caltech_transfer.errors import cli
from caltech_transfer.params import load_params
from caltech_transfer.runtime import mode_argument


@cli
def main():
    mode = mode_argument(sys.argv)
    params = load_params(f"train_{mode}")
    relaunch(params["train"]["processes"], {mode: params["train"][mode]["batch_size"]})  # torchrun, if asked
    train(mode, params, Paths.of_stage(mode))


if __name__ == "__main__":
    main()
