"""DVC stage `report`: report.md (the whole study, from the tracked metrics) and report/learning_curve.{tsv,png}."""

from caltech_transfer.core.cli import cli
from caltech_transfer.core.layout import SPLIT
from caltech_transfer.core.params import load_params
from caltech_transfer.results.architectures import ARCHITECTURES_FILE
from caltech_transfer.results.report import build
from caltech_transfer.results.spread import SEEDS_FILE


@cli
def main():
    build("report.md", "metrics", SPLIT, "plots", "report", load_params("report"), SEEDS_FILE, ARCHITECTURES_FILE)
    print("wrote report.md and report/learning_curve.png")


if __name__ == "__main__":
    main()
