"""The data stages. `python -m caltech_transfer.data download`: fetch, verify and extract Caltech-101 into
data/raw. `python -m caltech_transfer.data split`: the train/val/test manifests of data/raw and every image of
them decoded once, in data/split (the cache beside the manifests, so the stages after it read one folder)."""

import os
import sys

from ..core.cli import cli, stage_argument
from ..core.layout import CACHE, DOWNLOADS, RAW, SPLIT
from ..core.params import load_params
from . import download, split
from .cache import build_cache


def download_stage():
    p = load_params("download")["download"]
    download.run(
        p["source"],
        p["checksum"],
        p["inner_checksum"],
        out_dir=RAW.parent,
        downloads_dir=DOWNLOADS,
        retries=p["retries"],
        timeout=p["timeout"],
    )


def split_stage():
    p = load_params("split")
    split.run(RAW, SPLIT, p["split"], workers=os.cpu_count())
    build_cache(RAW, SPLIT, CACHE, p["cache"]["image_size"], p["cache"]["fit"], workers=os.cpu_count())


@cli
def main():
    {"download": download_stage, "split": split_stage}[stage_argument(sys.argv, ("download", "split"))]()


if __name__ == "__main__":
    main()
