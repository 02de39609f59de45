"""DVC stage `plot`: PNG figures of the three modes in plots/."""

from caltech_transfer.core.cli import cli
from caltech_transfer.core.layout import CACHE, SPLIT
from caltech_transfer.core.params import load_params
from caltech_transfer.results.plots import make_all


@cli
def main():
    for path in make_all("metrics", SPLIT, CACHE, "plots", load_params("plot")["plot"]):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
