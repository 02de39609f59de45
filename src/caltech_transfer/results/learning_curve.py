"""The learning curve's table and figure, from the test metrics of its points: feature_extract and finetune
trained on k images per class (`batches.datasets.nested_subset`) by the `curve_*` stages, each scored on the whole
test split, so every point is comparable.

A point is the mode's own recipe with fewer images: the same epochs over a smaller set (so fewer optimizer
steps for small k), model selection on the full validation split. The full pool is the baseline run itself
(the first split seed's runs), not a second copy of it."""

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..core.errors import UserError  # noqa: E402
from ..core.files import read_json, write_csv  # noqa: E402
from ..core.layout import CURVE_MODES  # noqa: E402

COLOURS = {"finetune": "tab:blue", "feature_extract": "tab:green"}


def collect(shots, pool, runs, seeds=None, curve_dir="metrics/curve"):
    """Rows (mode, images per class, test metrics) of every point, the full pool of `pool` images per class (the
    baseline, `runs[mode]`) last; with the seeds' table (`spread`), the full-pool row gets its standard deviation."""
    rows = []
    for mode in CURVE_MODES:
        for k in sorted(shots):
            rows.append(_row(mode, k, Path(curve_dir, f"k{k}", mode, "test.json")))
        full = _row(mode, pool, Path(runs[mode], "test.json"))
        full["std"] = (seeds or {}).get(mode, {}).get("mean_per_class_accuracy", {}).get("std")
        rows.append(full)
    return rows


def _row(mode, per_class, test_json):
    if not test_json.exists():
        raise UserError(f"{test_json} not found: run dvc repro to compute every learning-curve point")
    test = read_json(test_json)
    return {
        "mode": mode,
        "per_class": per_class,
        "top1": test["top1_accuracy"],
        "mean_per_class": test["mean_per_class_accuracy"],
        "std": None,
    }


def write_table(rows, path):
    """One row per k, one column per mode: the form `dvc plots` draws as one line per mode."""
    table = {}
    for r in rows:
        table.setdefault(r["per_class"], {})[r["mode"]] = f"{r['mean_per_class']:.4f}"
    write_csv(
        path,
        ["images_per_class", *CURVE_MODES],
        [[k, *(table[k].get(m, "") for m in CURVE_MODES)] for k in sorted(table)],
        delimiter="\t",
    )


def plot(rows, path):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode in CURVE_MODES:
        points = sorted((r["per_class"], r["mean_per_class"], r["std"]) for r in rows if r["mode"] == mode)
        ks, accs, stds = zip(*points)
        ax.plot(ks, accs, "o-", color=COLOURS[mode], label=mode)
        for k, acc, std in points:
            if std:
                ax.errorbar(k, acc, yerr=std, color=COLOURS[mode], capsize=4)
    ax.set_xscale("log")
    ks = sorted({r["per_class"] for r in rows})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    spread = " (error bar: std over split seeds)" if any(r["std"] for r in rows) else ""
    ax.set(
        xlabel="training images per class (log scale)",
        ylabel="mean per-class test accuracy",
        title="Learning curve" + spread,
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
