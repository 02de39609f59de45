"""Other networks trained from scratch with the scratch recipe, beside the project's own:
ResNet-18 and AlexNet. Each is an experiment that differs from the workspace only in `model.arch`:

    dvc exp run -n resnet18-scratch -S model.arch=resnet18 train_scratch evaluate@scratch
    dvc exp run -n alexnet-scratch -S model.arch=alexnet train_scratch evaluate@scratch
    python -m caltech_transfer.results.architectures --write   # prints the table, writes metrics/architectures.json

metrics/architectures.json keeps the networks it already records for the same params, as metrics/seeds.json does
(a clone does not carry the experiments), and the params it was computed for; the report uses it while they hold."""

import argparse
from pathlib import Path

from ..core.cli import cli
from ..core.errors import UserError
from ..core.files import write_json
from ..core.layout import SUMMARY
from ..core.params import read_yaml
from .experiments import applies, recorded_table, runs_from_dvc

ARCHITECTURES_FILE = Path("metrics/architectures.json")
TEST = "metrics/scratch/test.json"
TRAIN = f"metrics/scratch/{SUMMARY}"
KEPT = {  # what the table keeps of each metrics file
    TEST: ("top1_accuracy", "top5_accuracy", "mean_per_class_accuracy"),
    TRAIN: ("train_seconds", "device", "precision"),
}


def without_arch(params):
    model = {k: v for k, v in params.get("model", {}).items() if k != "arch"}
    return {**params, "model": model} if "model" in params else params


def architectures(runs, reference, recorded=None):
    """{"params": the params but model.arch, "networks": {arch: scratch's test metrics, training time, device,
    precision}} over the runs that differ from `reference` only in model.arch and trained scratch themselves (a
    run that did not rerun it carries the workspace's files: the same values again), plus the networks `recorded`
    holds for the same params."""
    networks = {}
    for params, metrics in runs:
        if without_arch(params) != without_arch(reference) or not all(f in metrics for f in KEPT):
            continue
        result = {k: metrics[f][k] for f, keys in KEPT.items() for k in keys}
        if result not in networks.values():
            networks.setdefault(params["model"]["arch"], result)
    if recorded and applies(recorded, reference, without_arch):
        for arch, result in recorded["networks"].items():
            networks.setdefault(arch, result)
    return {"params": without_arch(reference), "networks": networks}


def architectures_for(path, params):
    """The networks' table at `path` when it was computed for these params (model.arch aside), else {}."""
    return recorded_table(path, params, without_arch)


def markdown(table):
    lines = ["| network | top-1 | mean per-class | training time | trained on |", "|---|---|---|---|---|"]
    for arch, r in table["networks"].items():
        lines.append(
            f"| `{arch}` | {r['top1_accuracy']:.4f} | {r['mean_per_class_accuracy']:.4f} | "
            f"{r['train_seconds'] / 60:.1f} min | {r['device']}, {r['precision']} |"
        )
    return "\n".join(lines)


@cli
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"also write {ARCHITECTURES_FILE} (read by the report)")
    args = parser.parse_args()
    reference = read_yaml("params.yaml")
    table = architectures(runs_from_dvc(), reference, architectures_for(ARCHITECTURES_FILE, reference))
    if not table["networks"]:
        raise UserError("no run trained scratch with these params: run the experiments this module's help shows")
    print(markdown(table))
    if args.write:
        write_json(ARCHITECTURES_FILE, table)
        print(f"wrote {ARCHITECTURES_FILE}")


if __name__ == "__main__":
    main()
