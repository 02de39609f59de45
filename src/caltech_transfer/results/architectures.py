"""Other networks trained from scratch, beside the project's own: ResNet-18 and AlexNet. Each is an experiment
that differs from the workspace in `model.arch` and, where the architecture needs it, in the scratch recipe
(`train.scratch.*`, `train.scratch_lr`); the table names every recipe key a network changed:

    dvc exp run -n resnet18-scratch -S model.arch=resnet18 train_scratch evaluate_scratch
    dvc exp run -n alexnet-scratch -S model.arch=alexnet -S <recipe key>=<value> train_scratch evaluate_scratch
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
from .experiments import applies, leaving_out, recorded_table, runs_from_dvc

ARCHITECTURES_FILE = Path("metrics/architectures.json")
TEST = "metrics/scratch/test.json"
TRAIN = f"metrics/scratch/{SUMMARY}"
KEPT = {  # what the table keeps of each metrics file
    TEST: ("top1_accuracy", "top5_accuracy", "mean_per_class_accuracy"),
    TRAIN: ("train_seconds", "device", "precision"),
}


RECIPE = ("scratch", "scratch_lr")  # the train.* keys of the scratch recipe, which a network may adapt


def shared(params):
    """What a network's run shares with the workspace: every param but model.arch, the scratch recipe and the
    locations; of the split seeds only the first, the one scratch trains on."""
    kept = leaving_out(params, {"model": ("arch",), "train": RECIPE, "study": ("seeds",)})
    if "seeds" in params.get("study", {}):
        kept["study"] = {"scratch_split_seed": params["study"]["seeds"][0]}
    return kept


def scratch_recipe(params):
    """{dotted key: value} of the scratch recipe in `params`."""
    train = params["train"]
    return {"train.scratch_lr": train["scratch_lr"]} | {f"train.scratch.{k}": v for k, v in train["scratch"].items()}


def adapted(network, reference):
    """The scratch recipe's keys a network's run set otherwise than `reference`, with its values."""
    ours = scratch_recipe(reference)
    return {key: value for key, value in network["recipe"].items() if ours.get(key) != value}


def architectures(runs, reference, recorded=None):
    """{"params": the params `shared` keeps, "networks": {arch: scratch's test metrics, training time, device,
    precision, and the scratch recipe it ran}} over the runs that share those params with `reference` and trained
    scratch themselves (a run that did not rerun it carries the workspace's files: the same values again), plus
    the networks `recorded` holds for the same params."""
    networks, seen = {}, []
    for params, metrics in runs:
        if shared(params) != shared(reference) or not all(f in metrics for f in KEPT):
            continue
        result = {k: metrics[f][k] for f, keys in KEPT.items() for k in keys}
        if result not in seen:
            seen.append(result)
            networks.setdefault(params["model"]["arch"], {**result, "recipe": scratch_recipe(params)})
    if recorded and applies(recorded, reference, shared):
        for arch, result in recorded["networks"].items():
            networks.setdefault(arch, result)
    return {"params": shared(reference), "networks": networks}


def architectures_for(path, params):
    """The networks' table at `path` when it was computed for these params (model.arch aside), else {}."""
    return recorded_table(path, params, shared)


def command(arch, network, reference):
    """The `dvc exp run` that trains and scores this network from scratch in a workspace holding `reference`."""
    settings = "".join(f" -S {key}={value}" for key, value in adapted(network, reference).items())
    return f"dvc exp run -S model.arch={arch}{settings} train_scratch evaluate_scratch"


def markdown(table, reference):
    lines = [
        "| network | top-1 | mean per-class | training time | trained on | scratch recipe |",
        "|---|---|---|---|---|---|",
    ]
    for arch, r in table["networks"].items():
        changes = ", ".join(f"`{key}={value}`" for key, value in adapted(r, reference).items()) or "as above"
        lines.append(
            f"| `{arch}` | {r['top1_accuracy']:.4f} | {r['mean_per_class_accuracy']:.4f} | "
            f"{r['train_seconds'] / 60:.1f} min | {r['device']}, {r['precision']} | {changes} |"
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
    print(markdown(table, reference))
    if args.write:
        write_json(ARCHITECTURES_FILE, table)
        print(f"wrote {ARCHITECTURES_FILE}")


if __name__ == "__main__":
    main()
