"""The results stages. `python -m caltech_transfer.results plot <seed>`: PNG figures of that split seed's runs in
plots/. `python -m caltech_transfer.results report <seed>`: report.md (the whole study, from the tracked metrics)
and its figures in report/."""

import sys

from ..core.cli import cli, stage_arguments
from ..core.layout import CACHE, PRETRAINED, showcase, split_dir
from ..core.params import load_params
from .architectures import ARCHITECTURES_FILE
from .ladder import LADDER_FILE
from .plots import make_all
from .report import build
from .spread import SEEDS_FILE


def plot_stage():
    _, seed = stage_arguments(sys.argv, ("plot",), int)
    for path in make_all(showcase(seed), split_dir(seed), CACHE, "plots", load_params("plot")["plot"]):
        print(f"wrote {path}")


def report_stage():
    _, seed = stage_arguments(sys.argv, ("report",), int)
    params = load_params("report")
    files = {"seeds": SEEDS_FILE, "ladder": LADDER_FILE, "architectures": ARCHITECTURES_FILE}
    build("report.md", showcase(seed), seed, "plots", "report", params, files, PRETRAINED)
    print("wrote report.md, report/learning_curve.png and report/ladder.png")


STAGES = {"plot": plot_stage, "report": report_stage}


@cli
def main():
    stage = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] in STAGES else None
    if stage is None:
        stage_arguments(sys.argv[:2], tuple(STAGES))  # the usage line
    STAGES[stage]()


if __name__ == "__main__":
    main()
