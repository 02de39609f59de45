"""DVC stages `train_finetune`, `train_scratch`, `train_feature_extract`: `python stages/train.py <mode>`."""
import sys

from caltech_transfer.engine import mode_argument, train
from caltech_transfer.errors import cli
from caltech_transfer.params import load_params


@cli
def main():
    mode = mode_argument(sys.argv)
    params = load_params(f"train_{mode}")
    train(mode, params, "data/split", "data/cache", f"models/{mode}.pt", f"metrics/{mode}", f"logs/{mode}")


if __name__ == "__main__":
    main()
