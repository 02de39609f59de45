"""The results stages. `python -m caltech_transfer.results plot`: PNG figures of the three modes in plots/.
`python -m caltech_transfer.results report`: report.md (the whole study, from the tracked metrics) and
report/learning_curve.{tsv,png}."""

import sys

from ..core.cli import cli, stage_argument
from ..core.layout import CACHE, PRETRAINED, SPLIT
from ..core.params import load_params
from .architectures import ARCHITECTURES_FILE
from .plots import make_all
from .report import build
from .spread import SEEDS_FILE


def plot_stage():
    for path in make_all("metrics", SPLIT, CACHE, "plots", load_params("plot")["plot"]):
        print(f"wrote {path}")


def report_stage():
    params = load_params("report")
    build("report.md", "metrics", SPLIT, "plots", "report", params, SEEDS_FILE, ARCHITECTURES_FILE, PRETRAINED)
    print("wrote report.md and report/learning_curve.png")


@cli
def main():
    {"plot": plot_stage, "report": report_stage}[stage_argument(sys.argv, ("plot", "report"))]()


if __name__ == "__main__":
    main()
