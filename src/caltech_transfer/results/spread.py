"""The spread over split seeds: for each mode's test metrics the mean, the standard deviation and a 95% interval
over the runs that differ from the workspace only in `split.seed`, and the paired difference fine-tuning minus
feature extraction on the same splits, with the sentence each interval allows.

    dvc exp run -S split.seed=1 evaluate@finetune evaluate@feature_extract   # and seeds 2, 3, 4
    python -m caltech_transfer.results.spread --write        # prints the table, writes metrics/seeds.json

The runs are the workspace, its commit and their DVC experiments, plus the seeds metrics/seeds.json already records
for the same params (a clone does not carry the experiments that made them). metrics/seeds.json records the params
it was computed for; the report uses it only while they still hold."""

import argparse
import math
import statistics
from pathlib import Path

from scipy import stats

from ..core.cli import cli
from ..core.errors import UserError
from ..core.files import write_json
from ..core.layout import MODES, SUMMARY
from ..core.params import read_yaml
from .experiments import applies, leaving_out, recorded_table, runs_from_dvc

METRICS = ("top1_accuracy", "top5_accuracy", "mean_per_class_accuracy")
METRIC_NAMES = {"top1_accuracy": "top-1", "top5_accuracy": "top-5", "mean_per_class_accuracy": "mean per-class"}
SEEDS_FILE = Path("metrics/seeds.json")
# The comparison the study is about, on the same split each time: a positive difference favours the first mode.
PAIR = ("finetune", "feature_extract")
PAIR_NAMES = {"finetune": "fine-tuning", "feature_extract": "feature extraction"}
CONFIDENCE = 0.95


# What the seeds' table does not depend on: the seed itself, and scratch's own recipe (a seed's run reruns only
# feature extraction and fine-tuning, so a new scratch recipe keeps the recorded seeds).
NOT_COMPARED = {"split": ("seed",), "train": ("scratch", "scratch_lr")}


def without_seed(params):
    """`params` without the keys of NOT_COMPARED and the locations: what two runs of the seeds' table must share."""
    return leaving_out(params, NOT_COMPARED)


def spread(runs, reference, recorded=None):
    """The seeds' table: per mode and metric the summary of `interval` and the value per seed, and per mode the
    device and precision each seed trained on, over the runs whose params equal `reference` but for split.seed (one
    run per seed: the first listed, i.e. the workspace before experiments), then the seeds of `recorded` (an earlier
    table for the same params) that no run has; and the paired difference of PAIR on the seeds both modes have."""
    per_seed = {}
    for params, metrics in runs:
        if without_seed(params) == without_seed(reference):
            per_seed.setdefault(params["split"]["seed"], metrics)
    results = {
        mode: fresh_results({seed: seed_result(m, mode) for seed, m in sorted(per_seed.items())}) for mode in MODES
    }
    for mode, values in recorded_results(recorded, reference).items():
        for seed, result in values.items():
            results[mode].setdefault(seed, result)
    table = {
        "seeds": sorted({seed for values in results.values() for seed in values}),
        "params": without_seed(reference),
        "trained_on": {},
    }
    for mode, values in results.items():
        if len(values) >= 2:
            values = dict(sorted(values.items()))
            table[mode] = {k: summary({seed: v[k] for seed, v in values.items()}) for k in METRICS}
            table["trained_on"][mode] = {str(seed): v["trained_on"] for seed, v in values.items()}
    first, second = (results[mode] for mode in PAIR)
    shared = sorted(set(first) & set(second))
    if len(shared) >= 2:
        table["difference"] = {k: summary({seed: first[seed][k] - second[seed][k] for seed in shared}) for k in METRICS}
    return table


def seed_result(metrics, mode):
    """A mode's test metrics in one run and the machine and precision that trained it, or None when the run has
    not both."""
    test, train = metrics.get(f"metrics/{mode}/test.json", {}), metrics.get(f"metrics/{mode}/{SUMMARY}", {})
    if not all(k in test for k in METRICS) or not {"device", "precision"} <= train.keys():
        return None
    return {k: test[k] for k in METRICS} | {"trained_on": f"{train['device']}, {train['precision']}"}


def fresh_results(per_seed):
    """The seeds' results that their own runs produced. A mode whose stages a seed's run did not reproduce
    (scratch, in the loop of this module's help) carries the first seed's files unchanged; two splits cannot give
    the very same metrics, so a result seen at a lower seed already does not count again."""
    fresh = {}
    for seed, result in per_seed.items():
        if result and result not in fresh.values():
            fresh[seed] = result
    return fresh


def recorded_results(table, reference):
    """{mode: {seed: metrics}} of an earlier seeds' table, when it was computed for the same params."""
    if not table or not applies(table, reference, without_seed):
        return {}
    return {
        mode: {
            int(seed): {k: table[mode][k]["values"][seed] for k in METRICS} | {"trained_on": machine}
            for seed, machine in table["trained_on"][mode].items()
        }
        for mode in MODES
        if mode in table
    }


def summary(values):
    """Mean, sample standard deviation and the two-sided 95% t-interval of the mean, over {seed: value}."""
    numbers = list(values.values())
    mean, std = statistics.mean(numbers), statistics.stdev(numbers)
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, len(numbers) - 1)) * std / math.sqrt(len(numbers))
    return {
        "n": len(numbers),
        "mean": mean,
        "std": std,
        "low": mean - half,
        "high": mean + half,
        "values": {str(seed): value for seed, value in values.items()},
    }


def verdict(difference, metric):
    """The sentence a paired difference's interval allows (a mode is ahead only where the interval excludes 0), with
    how many splits each mode won and what one new split is expected to show."""
    first, second = (PAIR_NAMES[mode] for mode in PAIR)
    name, n = METRIC_NAMES[metric], difference["n"]
    interval = (
        f"{100 * difference['mean']:+.2f} points, 95% interval {100 * difference['low']:+.2f} to "
        f"{100 * difference['high']:+.2f}"
    )
    if difference["low"] > 0:
        called = f"On {name} accuracy {first} is ahead of {second} at {n} seeds ({interval})"
    elif difference["high"] < 0:
        called = f"On {name} accuracy {second} is ahead of {first} at {n} seeds ({interval})"
    else:
        called = f"On {name} accuracy no difference between {first} and {second} is detected at {n} seeds ({interval})"
    values = difference["values"].values()
    wins = f"{first} won {sum(v > 0 for v in values)} of the {n} splits, {second} {sum(v < 0 for v in values)}"
    low, high = prediction_interval(difference)
    return (
        f"{called}; {wins}; on one new split the difference is expected between {100 * low:+.2f} and "
        f"{100 * high:+.2f} points (95% prediction interval)."
    )


def prediction_interval(s):
    """The 95% interval in which one more split's value falls, from the seeds' summary `s`: the mean's uncertainty and
    one split's spread together (t with n - 1 degrees of freedom, standard deviation times sqrt(1 + 1/n))."""
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, s["n"] - 1)) * s["std"] * math.sqrt(1 + 1 / s["n"])
    return s["mean"] - half, s["mean"] + half


def trained_on(table):
    """Where the seeds' runs trained: "<device>, <precision>", with each one's seeds when they differ."""
    seeds = {}
    for machines in table["trained_on"].values():
        for seed, machine in machines.items():
            seeds.setdefault(machine, set()).add(int(seed))
    if len(seeds) == 1:
        return next(iter(seeds))
    return "; ".join(f"{machine} (seeds {', '.join(map(str, sorted(s)))})" for machine, s in seeds.items())


def interval_cell(s):
    return f"{s['mean']:.4f} ± {s['std']:.4f} [{s['low']:.4f}, {s['high']:.4f}]"


def markdown(table):
    lines = [
        f"Split seeds {', '.join(map(str, table['seeds']))}, trained on {trained_on(table)}: mean ± standard "
        f"deviation [{CONFIDENCE:.0%} interval of the mean]:",
        "",
        "| mode | top-1 | top-5 | mean per-class |",
        "|---|---|---|---|",
    ]
    for mode in MODES:
        if mode in table:
            lines.append(f"| {mode} | " + " | ".join(interval_cell(table[mode][k]) for k in METRICS) + " |")
    if "difference" in table:
        lines += ["", f"{PAIR[0]} minus {PAIR[1]} on the same split:", ""]
        lines += [f"- {verdict(table['difference'][k], k)}" for k in METRICS]
    return "\n".join(lines)


def seeds_for(path, params):
    """The seeds' table at `path` when it was computed for these params (NOT_COMPARED aside), else {}."""
    return recorded_table(path, params, without_seed)


@cli
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"also write {SEEDS_FILE} (read by the report stage)")
    args = parser.parse_args()
    reference = read_yaml("params.yaml")
    table = spread(runs_from_dvc(), reference, seeds_for(SEEDS_FILE, reference))
    if not any(mode in table for mode in MODES):
        raise UserError(
            f"fewer than two split seeds with test metrics (found seeds {table['seeds']}): run the "
            "seeds first, as this module's help shows"
        )
    print(markdown(table))
    if args.write:
        write_json(SEEDS_FILE, table)
        print(f"wrote {SEEDS_FILE}")


if __name__ == "__main__":
    main()
