"""DVC stage `split`: train/val/test manifests of data/raw in data/split."""

import os

from caltech_transfer.core.cli import cli
from caltech_transfer.core.layout import RAW, SPLIT
from caltech_transfer.core.params import load_params
from caltech_transfer.data import split


@cli
def main():
    p = load_params("split")["split"]
    split.run(RAW, SPLIT, p, workers=os.cpu_count())


if __name__ == "__main__":
    main()
