"""DVC stage `plot`: PNG figures of the three modes in plots/."""
from caltech_transfer.errors import cli
from caltech_transfer.params import load_params
from caltech_transfer.plots import make_all


@cli
def main():
    for path in make_all("metrics", "data/split", "data/cache", "plots", load_params("plot")["plot"]):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
