"""DVC stage `evaluate@<mode>`: `python stages/evaluate.py <mode>` scores models/<mode>.pt on the test split."""
import sys

from caltech_transfer.errors import cli
from caltech_transfer.evaluate import evaluate
from caltech_transfer.params import load_params
from caltech_transfer.runtime import mode_argument


@cli
def main():
    mode = mode_argument(sys.argv)
    p = load_params(f"evaluate@{mode}")
    evaluate(f"models/{mode}.pt", "data/split", "data/cache", f"metrics/{mode}", p["runtime"],
             p["evaluate"]["batch_size"], p["evaluate"]["workers"])


if __name__ == "__main__":
    main()
