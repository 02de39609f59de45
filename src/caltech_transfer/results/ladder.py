"""The `ladder` stage (`python -m caltech_transfer.results.ladder`): the study's backbone (model.arch) and every rung
of the ladder (`ladder_*` stages) side by side in metrics/ladder.json: parameters, ImageNet top-1 accuracy, mean
per-class test accuracy of feature extraction over the split seeds (mean and 95% interval) and of fine-tuning on the
first seed, and their training times, which the report tables and plots against ImageNet accuracy.

The rungs are the sections under `ladder` in params.yaml: their names are read here, each backbone's architecture and
size from the weights its pretrained stage wrote (so a moved weights file reruns nothing here)."""

from pathlib import Path

from ..core.cli import cli
from ..core.errors import UserError
from ..core.files import read_json, write_json
from ..core.layout import FEATURES, LADDER, PRETRAINED, SEEDS, SUMMARY, rung_weights
from ..core.params import load_params, read_yaml
from .spread import summary

LADDER_FILE = Path("metrics/ladder.json")
STUDY = "study"  # the row of the study's own backbone
# ImageNet top-1 of the weights timm ports, as their authors report it (tensorflow/tpu, EfficientNet-Lite README).
IMAGENET_TOP1 = {
    "timm/tf_efficientnet_lite0": 0.751,
    "timm/tf_efficientnet_lite1": 0.767,
    "timm/tf_efficientnet_lite2": 0.776,
}
IMAGENET_CLASSES = 1000
BATCHNORM_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")  # buffers, not parameters


def backbone(pretrained, features):
    """(architecture, parameters as an ImageNet classifier: the backbone's weights and a 1000-class head on its
    features, the size papers give) from a pretrained stage's weights and a features stage's output."""
    import numpy as np  # slow imports the report, which presents the table, does without
    import torch

    if not Path(pretrained).is_file() or not Path(features, "features.npy").is_file():
        raise UserError(f"{pretrained} or {features} not found: run dvc repro (the pretrained and features stages)")
    weights = torch.load(pretrained, map_location="cpu", weights_only=True)
    learned = [v for k, v in weights["state_dict"].items() if not k.endswith(BATCHNORM_STATISTICS)]
    width = np.load(Path(features, "features.npy"), mmap_mode="r").shape[1]
    return weights["arch"], sum(v.numel() for v in learned) + (width + 1) * IMAGENET_CLASSES


def run_result(folder):
    """(test metrics, training summary) of one run's metrics folder, or a one-line error naming its stage."""
    test, train = Path(folder, "test.json"), Path(folder, SUMMARY)
    if not test.exists() or not train.exists():
        raise UserError(f"{test} or {train} not found: run dvc repro (the ladder's and the study's stages)")
    return read_json(test), read_json(train)


def backbone_row(weights, feature_extract_runs, finetune_run):
    """The ladder's row of one backbone from its (pretrained weights, features) and its runs' metrics folders."""
    arch, size = backbone(*weights)
    extracted = [run_result(folder) for folder in feature_extract_runs]
    tuned_test, tuned_train = run_result(finetune_run)
    return {
        "arch": arch,
        "parameters": size,
        "imagenet_top1": IMAGENET_TOP1.get(arch),
        "feature_extract": {
            metric: summary([test[metric] for test, _ in extracted])
            for metric in ("top1_accuracy", "mean_per_class_accuracy")
        },
        "feature_extract_seconds": sum(train["train_seconds"] for _, train in extracted) / len(extracted),
        "finetune": {metric: tuned_test[metric] for metric in ("top1_accuracy", "mean_per_class_accuracy")},
        "finetune_seconds": tuned_train["train_seconds"],
        "trained_on": f"{tuned_train['device']}, {tuned_train['precision']}",
    }


def rungs(params_file="params.yaml"):
    """The names of the ladder's rungs, in params.yaml's order."""
    return list(read_yaml(params_file).get("ladder") or {})


def ladder(seeds):
    """{backbone name: row}: the study's backbone, then each rung."""
    first = seeds[0]
    study_runs = [SEEDS / str(s) / "feature_extract" for s in seeds]
    rows = {STUDY: backbone_row((PRETRAINED, FEATURES), study_runs, SEEDS / str(first) / "finetune")}
    for rung in rungs():
        runs = [LADDER / rung / str(s) / "feature_extract" for s in seeds]
        rows[rung] = backbone_row(rung_weights(rung), runs, LADDER / rung / str(first) / "finetune")
    return {"seeds": seeds, "backbones": rows}


@cli
def main():
    table = ladder(load_params("ladder")["study"]["seeds"])
    write_json(LADDER_FILE, table)
    print(f"wrote {LADDER_FILE}: {len(table['backbones'])} backbones")


if __name__ == "__main__":
    main()


def plot(table, path):
    """Transfer accuracy against ImageNet accuracy: feature extraction (mean and 95% interval over the seeds) and
    fine-tuning (first seed) of every backbone whose ImageNet accuracy is known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(name, row) for name, row in table["backbones"].items() if row["imagenet_top1"] is not None]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode, colour, label in (
        ("feature_extract", "tab:green", "feature extraction"),
        ("finetune", "tab:blue", "fine-tuning"),
    ):
        xs = [100 * row["imagenet_top1"] for _, row in rows]
        ys = [row[mode]["mean_per_class_accuracy"] for _, row in rows]
        if mode == "feature_extract":
            ys = [y["mean"] for y in ys]
        ax.plot(xs, ys, "o-", color=colour, label=label)
        for (name, row), x, y in zip(rows, xs, ys):
            spread = row[mode]["mean_per_class_accuracy"]
            if mode == "feature_extract" and "low" in spread:
                ax.errorbar(x, y, yerr=[[y - spread["low"]], [spread["high"] - y]], color=colour, capsize=4)
            ax.annotate(
                row["arch"].removeprefix("timm/"), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
    ax.set(
        xlabel="ImageNet top-1 accuracy of the weights (%)",
        ylabel="mean per-class test accuracy",
        title=f"Transfer against ImageNet accuracy ({len(table['seeds'])} split seeds; fine-tuning: the first)",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def markdown(table, goal, figure):
    """The report's section: the table, the best backbone within `goal`'s parameter budget against its accuracy, and
    the figure. `goal`: (accuracy, parameters, what the accuracy is)."""
    accuracy, budget, what = goal
    lines = [
        "## The backbone ladder",
        "",
        f"Each backbone at the study's input size and recipes: feature extraction on each of the {len(table['seeds'])} "
        "split seeds (mean per-class accuracy, mean [95% interval]), fine-tuning on the first (`dvc repro ladder`; "
        "the rungs are `ladder` in params.yaml). Training time: feature extraction's per seed, on the machine named.",
        "",
        "| backbone | parameters | ImageNet top-1 | feature extraction | fine-tuning | training time (FE, FT) "
        "| trained on |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in table["backbones"].items():
        fe = row["feature_extract"]["mean_per_class_accuracy"]
        fe_cell = f"{fe['mean']:.4f}" + (f" [{fe['low']:.4f}, {fe['high']:.4f}]" if "low" in fe else "")
        top1 = "unknown" if row["imagenet_top1"] is None else f"{100 * row['imagenet_top1']:.1f}%"
        lines.append(
            f"| `{row['arch']}`{' (the study)' if name == STUDY else ''} | {row['parameters'] / 1e6:.2f} M | {top1} | "
            f"{fe_cell} | {row['finetune']['mean_per_class_accuracy']:.4f} | "
            f"{row['feature_extract_seconds'] / 60:.1f} min, {row['finetune_seconds'] / 60:.1f} min | "
            f"{row['trained_on']} |"
        )
    lines += ["", goal_sentence(table, accuracy, budget, what), "", f"![backbone ladder]({figure})"]
    return "\n".join(lines)


def goal_sentence(table, accuracy, budget, what):
    """Whether a backbone of at most `budget` parameters reaches `accuracy` mean per-class: the best result of each
    mode within the budget, feature extraction by its interval, fine-tuning by its one split."""
    small = {name: row for name, row in table["backbones"].items() if row["parameters"] <= budget}
    if not small:
        return f"No backbone of the ladder has at most {budget / 1e6:.1f} M parameters."
    fe_name = max(small, key=lambda n: small[n]["feature_extract"]["mean_per_class_accuracy"]["mean"])
    ft_name = max(small, key=lambda n: small[n]["finetune"]["mean_per_class_accuracy"])
    fe = small[fe_name]["feature_extract"]["mean_per_class_accuracy"]
    ft = small[ft_name]["finetune"]["mean_per_class_accuracy"]
    reached = fe["mean"] >= accuracy or ft >= accuracy
    interval = f" [{fe['low']:.4f}, {fe['high']:.4f}]" if "low" in fe else ""
    return (
        f"Goal: {accuracy:.3f} mean per-class ({what}) with at most {budget / 1e6:.1f} M parameters: "
        f"{'reached' if reached else 'not reached'}. Best within the budget: feature extraction with "
        f"`{small[fe_name]['arch']}` {fe['mean']:.4f}{interval} over the seeds, fine-tuning with "
        f"`{small[ft_name]['arch']}` {ft:.4f} on one split."
    )
