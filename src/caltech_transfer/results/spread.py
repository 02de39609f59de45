"""The `seeds` stage (`python -m caltech_transfer.results.spread`): the spread of the study's modes over the split
seeds `study.seeds` names, from each seed's test metrics (metrics/seeds/<seed>/<mode>/test.json, written by the
evaluate@<seed>-<mode> stages): per mode and metric the mean, the standard deviation and the 95% t-interval of the
mean, and the paired difference fine-tuning minus feature extraction on the same splits with how many splits each
mode won. Written to metrics/seeds.json, which the report reads."""

import math
import statistics
from pathlib import Path

from scipy import stats

from ..core.cli import cli
from ..core.errors import UserError
from ..core.files import read_json, write_json
from ..core.layout import SEEDS, STUDY_MODES, SUMMARY
from ..core.params import load_params

METRICS = ("top1_accuracy", "top5_accuracy", "mean_per_class_accuracy")  # of each run
# Of the spread: top-5 is near 1 for every run, and each number here is a column of `dvc exp show`.
SPREAD_METRICS = ("top1_accuracy", "mean_per_class_accuracy")
METRIC_NAMES = {"top1_accuracy": "top-1", "top5_accuracy": "top-5", "mean_per_class_accuracy": "mean per-class"}
SEEDS_FILE = Path("metrics/seeds.json")
# The comparison the study is about, on the same split each time: a positive difference favours the first mode.
PAIR = ("finetune", "feature_extract")
PAIR_NAMES = {"finetune": "fine-tuning", "feature_extract": "feature extraction"}
CONFIDENCE = 0.95


def seed_results(seeds, seeds_dir=SEEDS):
    """{mode: {seed: test metrics and "trained_on"}} of every study mode on every seed, or a one-line error naming
    the first seed whose stages have not run."""
    results = {mode: {} for mode in STUDY_MODES}
    for seed in seeds:
        for mode in STUDY_MODES:
            test, train = Path(seeds_dir, str(seed), mode, "test.json"), Path(seeds_dir, str(seed), mode, SUMMARY)
            if not test.exists() or not train.exists():
                raise UserError(
                    f"{test} or {train} not found: run that seed's stages (dvc repro evaluate@{seed}-{mode})"
                )
            summary = read_json(train)
            results[mode][seed] = {k: read_json(test)[k] for k in METRICS} | {
                "trained_on": f"{summary['device']}, {summary['precision']}"
            }
    return results


def spread(results):
    """The seeds' table of `seed_results`: per mode and metric the `summary` over seeds, where each seed trained,
    and the paired difference of PAIR with the splits each mode won."""
    seeds = sorted(next(iter(results.values())))
    table = {"seeds": seeds, "trained_on": trained_on(results)}
    for mode, values in results.items():
        table[mode] = {k: summary([values[seed][k] for seed in seeds]) for k in SPREAD_METRICS}
    first, second = (results[mode] for mode in PAIR)
    table["difference"] = {}
    for k in SPREAD_METRICS:
        differences = [first[seed][k] - second[seed][k] for seed in seeds]
        wins = {PAIR[0]: sum(d > 0 for d in differences), PAIR[1]: sum(d < 0 for d in differences)}
        table["difference"][k] = summary(differences) | {"wins": wins}
    return table


def summary(numbers):
    """Mean, sample standard deviation and the two-sided 95% t-interval of the mean; with one number, its value
    alone (no spread can be measured)."""
    mean = statistics.mean(numbers)
    if len(numbers) < 2:
        return {"n": 1, "mean": mean}
    std = statistics.stdev(numbers)
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, len(numbers) - 1)) * std / math.sqrt(len(numbers))
    return {"n": len(numbers), "mean": mean, "std": std, "low": mean - half, "high": mean + half}


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
    wins = difference["wins"]
    won = f"{first} won {wins[PAIR[0]]} of the {n} splits, {second} {wins[PAIR[1]]}"
    low, high = prediction_interval(difference)
    return (
        f"{called}; {won}; on one new split the difference is expected between {100 * low:+.2f} and "
        f"{100 * high:+.2f} points (95% prediction interval)."
    )


def prediction_interval(s):
    """The 95% interval in which one more split's value falls, from the seeds' summary `s`: the mean's uncertainty and
    one split's spread together (t with n - 1 degrees of freedom, standard deviation times sqrt(1 + 1/n))."""
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, s["n"] - 1)) * s["std"] * math.sqrt(1 + 1 / s["n"])
    return s["mean"] - half, s["mean"] + half


def trained_on(results):
    """Where the seeds' runs of `seed_results` trained: "<device>, <precision>", with each one's seeds when they
    differ."""
    seeds = {}
    for values in results.values():
        for seed, result in values.items():
            seeds.setdefault(result["trained_on"], set()).add(seed)
    if len(seeds) == 1:
        return next(iter(seeds))
    return "; ".join(f"{machine} (seeds {', '.join(map(str, sorted(s)))})" for machine, s in seeds.items())


def interval_cell(s):
    if s["n"] < 2:
        return f"{s['mean']:.4f}"
    return f"{s['mean']:.4f} ± {s['std']:.4f} [{s['low']:.4f}, {s['high']:.4f}]"


def write_seeds(seeds, seeds_dir=SEEDS, out=SEEDS_FILE):
    table = spread(seed_results(seeds, seeds_dir))
    write_json(out, table)
    print(f"wrote {out}: {len(seeds)} split seeds")
    return table


@cli
def main():
    write_seeds(load_params("seeds")["study"]["seeds"])


if __name__ == "__main__":
    main()
