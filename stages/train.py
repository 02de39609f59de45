"""DVC stages `train_finetune`, `train_scratch`, `train_feature_extract`: `python stages/train.py <mode>`."""
import sys

from caltech_transfer.engine import MODES, train
from caltech_transfer.errors import UserError, cli
from caltech_transfer.params import load_params


@cli
def main():
    mode = sys.argv[1] if len(sys.argv) == 2 else None
    if mode not in MODES:
        raise UserError(f"usage: python stages/train.py {{{'|'.join(MODES)}}}")
    params = load_params(f"train_{mode}")
    train(mode, params, "data/split", "data/cache", f"models/{mode}.pt", f"metrics/{mode}", f"logs/{mode}")


if __name__ == "__main__":
    main()
