"""DVC stage `cache`: every image of the manifests decoded once into data/cache/<split>.npy."""

import os

from caltech_transfer.core.cli import cli
from caltech_transfer.core.layout import CACHE, RAW, SPLIT
from caltech_transfer.core.params import load_params
from caltech_transfer.data.cache import build_cache


@cli
def main():
    p = load_params("cache")["cache"]
    build_cache(RAW, SPLIT, CACHE, p["image_size"], p["fit"], workers=os.cpu_count())


if __name__ == "__main__":
    main()
