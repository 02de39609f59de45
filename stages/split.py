"""DVC stage `split`: train/val/test manifests of data/raw in data/split."""
import os

from caltech_transfer import split
from caltech_transfer.errors import cli
from caltech_transfer.params import load_params


@cli
def main():
    p = load_params("split")["split"]
    split.run("data/raw/101_ObjectCategories", "data/split", p, workers=os.cpu_count())


if __name__ == "__main__":
    main()
