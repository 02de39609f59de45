"""The learning curve: feature_extract and finetune trained on k images per class (nested subsets of the training
pool, `data.nested_subset`), each scored on the whole test split, so every point is comparable.

A point is the mode's own recipe with fewer images: the same epochs over a smaller set (so fewer optimizer
steps for small k), model selection on the full validation split. The full pool is the baseline run itself
(`metrics/<mode>/`), not a second copy of it. A feature_extract point's frozen backbone gives exactly the test
features `evaluate@feature_extract` already wrote, so its head is scored on those instead of running the backbone
over the test split again (minutes per point on a CPU)."""
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from .checkpoints import load_checkpoint, load_classifier  # noqa: E402
from .engine import Paths  # noqa: E402
from .errors import UserError  # noqa: E402
from .evaluate import write_outputs  # noqa: E402
from .files import read_csv, read_json, write_csv  # noqa: E402
from .metrics import compute_metrics  # noqa: E402
from .split import read_manifest  # noqa: E402

CURVE_MODES = ("feature_extract", "finetune")
COLOURS = {"finetune": "tab:blue", "feature_extract": "tab:green"}


def point_paths(mode, per_class):
    """Where the point (mode, k) keeps its checkpoint, metrics and logs; finetune's LP-FT head comes from the
    feature_extract checkpoint beside it, trained on the same k images per class."""
    folder = f"curve/k{per_class}"
    return Paths(Path("data/split"), Path("data/cache"), Path(f"models/{folder}/{mode}.pt"),
                 Path(f"metrics/{folder}/{mode}"), Path(f"logs/{folder}/{mode}"), train_per_class=per_class)


def score_on_evaluated_features(checkpoint, baseline_checkpoint, baseline_metrics, split_dir, out_dir):
    """Test metrics of a feature_extract point: its head on the test features of the baseline evaluation, which
    came from the same frozen backbone (checked: same model params and preprocessing, same test images)."""
    (model, point), baseline = load_classifier(checkpoint), load_checkpoint(baseline_checkpoint)
    if (point["params"]["model"], point["preprocessing"]) != (baseline["params"]["model"], baseline["preprocessing"]):
        raise UserError(f"{baseline_checkpoint} was trained with other model params than this learning-curve point: "
                        "rerun the pipeline (dvc repro)")
    rows = read_csv(Path(baseline_metrics) / "predictions.csv")
    paths = [r["path"] for r in rows]
    if paths != [path for path, _, _ in read_manifest(Path(split_dir) / "test.csv")]:
        raise UserError(f"{baseline_metrics} holds another test split than {split_dir}: rerun dvc repro")
    classes = point["classes"]
    labels = torch.tensor([classes.index(r["true_class"]) for r in rows])
    features = torch.from_numpy(np.load(Path(baseline_metrics) / "features.npy")).float()
    with torch.inference_mode():
        logits = model.head(features)
    summary, per_class, _ = compute_metrics(logits, labels, len(classes))
    write_outputs(Path(out_dir), summary, per_class, logits, labels, paths, classes, features)
    print(f"feature_extract, {len(rows)} test images: mean per-class {summary['mean_per_class_accuracy']:.4f}")
    return summary


def pool_size(split_dir):
    """Training images of the smallest class: the largest k a point can use."""
    counts = {}
    for _, name, _ in read_manifest(Path(split_dir) / "train.csv"):
        counts[name] = counts.get(name, 0) + 1
    return min(counts.values())


def check_shots(per_class, split_dir):
    pool = pool_size(split_dir)
    if per_class >= pool:
        raise UserError(f"curve.shots: {per_class} images per class is not below the training pool of {pool} "
                        f"(the full pool is the baseline run itself); use values from 1 to {pool - 1}")


def collect(shots, pool, metrics_dir="metrics", seeds=None):
    """Rows (mode, images per class, test metrics) of every point, the full pool of `pool` images per class (the
    baseline) last; with the seeds' table (`spread`), the full-pool row gets its standard deviation."""
    metrics_dir = Path(metrics_dir)
    rows = []
    for mode in CURVE_MODES:
        for k in sorted(shots):
            rows.append(_row(mode, k, metrics_dir / f"curve/k{k}/{mode}/test.json"))
        full = _row(mode, pool, metrics_dir / mode / "test.json")
        full["std"] = (seeds or {}).get(mode, {}).get("mean_per_class_accuracy", {}).get("std")
        rows.append(full)
    return rows


def _row(mode, per_class, test_json):
    if not test_json.exists():
        raise UserError(f"{test_json} not found: run dvc repro to compute every learning-curve point")
    test = read_json(test_json)
    return {"mode": mode, "per_class": per_class,
            "top1": test["top1_accuracy"], "mean_per_class": test["mean_per_class_accuracy"], "std": None}


def write_table(rows, path):
    """One row per k, one column per mode: the form `dvc plots` draws as one line per mode."""
    table = {}
    for r in rows:
        table.setdefault(r["per_class"], {})[r["mode"]] = f"{r['mean_per_class']:.4f}"
    write_csv(path, ["images_per_class", *CURVE_MODES],
              [[k, *(table[k].get(m, "") for m in CURVE_MODES)] for k in sorted(table)], delimiter="\t")


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
    ax.set(xlabel="training images per class (log scale)", ylabel="mean per-class test accuracy",
           title="Learning curve" + spread)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
