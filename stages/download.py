"""DVC stage `download`: fetch, verify and extract Caltech-101 into data/raw."""
from caltech_transfer import download
from caltech_transfer.errors import cli
from caltech_transfer.params import load_params


@cli
def main():
    p = load_params("download")["download"]
    download.run(p["source"], p["checksum"], p["inner_checksum"], out_dir="data/raw",
                 downloads_dir="data/downloads", retries=p["retries"], timeout=p["timeout"])


if __name__ == "__main__":
    main()
