"""The learning curve's table and figure, from the test metrics of its points: feature_extract and finetune
trained on k images per class (`batches.datasets.nested_subset`) of each split seed of `curve.seeds` by the
`curve@<k>-<seed>` stages, each scored on its whole test split.

Every point of a mode trained for the same budget of optimizer steps (`evaluation.curve`), so the curve compares
amounts of data at equal training; each point is the mean over the seeds with its 95% interval, and the gap between
the modes at each k is a paired difference on the same splits, a verdict only where its interval excludes zero."""

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..core.errors import UserError  # noqa: E402
from ..core.files import read_json, write_csv  # noqa: E402
from ..core.layout import CURVE, CURVE_MODES, SUMMARY  # noqa: E402
from .spread import PAIR, summary  # noqa: E402

COLOURS = {"finetune": "tab:blue", "feature_extract": "tab:green"}
METRIC = "mean_per_class_accuracy"


def collect(shots, seeds, curve_dir=CURVE):
    """{k: {mode: seeds' summary of mean per-class accuracy and the optimizer steps trained, "difference": the paired
    difference PAIR[0] - PAIR[1] over the seeds}} of every point."""
    points = {}
    for k in sorted(shots):
        values, steps = {}, {}
        for mode in CURVE_MODES:
            runs = [Path(curve_dir, str(seed), f"k{k}", mode) for seed in seeds]
            for run in runs:
                if not (run / "test.json").exists():
                    raise UserError(
                        f"{run / 'test.json'} not found: run dvc repro to compute every learning-curve point"
                    )
            values[mode] = [read_json(run / "test.json")[METRIC] for run in runs]
            steps[mode] = sorted({read_json(run / SUMMARY)["optimizer_steps"] for run in runs})
        points[k] = {mode: summary(values[mode]) | {"steps": steps[mode]} for mode in CURVE_MODES}
        differences = [a - b for a, b in zip(values[PAIR[0]], values[PAIR[1]])]
        points[k]["difference"] = summary(differences)
    return points


def write_table(points, path):
    """One row per k, the mean and 95% interval of each mode: the form `dvc plots` draws as one line per mode."""
    columns = [f"{mode}{end}" for mode in CURVE_MODES for end in ("", "_low", "_high")]
    rows = []
    for k, point in points.items():
        cells = []
        for mode in CURVE_MODES:
            s = point[mode]
            cells += [f"{s[key]:.4f}" if key in s else "" for key in ("mean", "low", "high")]
        rows.append([k, *cells])
    write_csv(path, ["images_per_class", *columns], rows, delimiter="\t")


def plot(points, path):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ks = sorted(points)
    for mode in CURVE_MODES:
        means = [points[k][mode]["mean"] for k in ks]
        ax.plot(ks, means, "o-", color=COLOURS[mode], label=mode)
        spread = [(k, points[k][mode]) for k in ks if "low" in points[k][mode]]
        for k, s in spread:
            ax.errorbar(
                k, s["mean"], yerr=[[s["mean"] - s["low"]], [s["high"] - s["mean"]]], color=COLOURS[mode], capsize=4
            )
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    n = points[ks[0]][CURVE_MODES[0]]["n"]
    ax.set(
        xlabel="training images per class (log scale)",
        ylabel="mean per-class test accuracy",
        title=f"Learning curve, {n} split seed{'s' if n > 1 else ''}" + (" (95% intervals)" if n > 1 else ""),
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
