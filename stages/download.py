"""DVC stage `download`: fetch, verify and extract Caltech-101 into data/raw."""

from caltech_transfer.core.cli import cli
from caltech_transfer.core.layout import DOWNLOADS, RAW
from caltech_transfer.core.params import load_params
from caltech_transfer.data import download


@cli
def main():
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


if __name__ == "__main__":
    main()
