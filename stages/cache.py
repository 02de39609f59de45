"""DVC stage `cache`: every image of the manifests decoded once into data/cache/<split>.npy."""
import os

from caltech_transfer.data import build_cache
from caltech_transfer.errors import cli
from caltech_transfer.params import load_params


@cli
def main():
    p = load_params("cache")["cache"]
    build_cache("data/raw/101_ObjectCategories", "data/split", "data/cache", p["image_size"],
                p["fit"], workers=os.cpu_count())


if __name__ == "__main__":
    main()
