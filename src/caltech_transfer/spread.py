"""The spread over split seeds: mean ± standard deviation of each mode's test metrics over the runs that differ
from the workspace only in `split.seed` (the workspace, its commit and their DVC experiments).

    dvc exp run --queue -S split.seed=1 evaluate@finetune evaluate@feature_extract   # and seed 2
    dvc queue start && dvc queue status                                              # wait for both
    python -m caltech_transfer.spread --write        # prints the table, writes metrics/seeds.json

metrics/seeds.json records the params it was computed for; the report uses it only while they still hold."""
import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from .errors import UserError, cli
from .files import read_json, write_json
from .modes import MODES
from .params import read_yaml

METRICS = ("top1_accuracy", "top5_accuracy", "mean_per_class_accuracy")
SEEDS_FILE = Path("metrics/seeds.json")


def runs_from_dvc():
    """(params, {metrics file: values}) of the workspace and every experiment `dvc exp show` lists."""
    result = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if result.returncode:
        raise UserError(f"dvc exp show failed: {result.stderr.strip().splitlines()[-1:]}")
    runs = []
    for baseline in json.loads(result.stdout):
        revs = [baseline] + [rev for exp in baseline.get("experiments") or [] for rev in exp["revs"]]
        for rev in revs:
            data = rev.get("data") or {}
            metrics = {path: entry.get("data", {}) for path, entry in (data.get("metrics") or {}).items()}
            params = ((data.get("params") or {}).get("params.yaml") or {}).get("data")
            if params:
                runs.append((params, metrics))
    return runs


def without_seed(params):
    return {**params, "split": {k: v for k, v in params["split"].items() if k != "seed"}}


def spread(runs, reference):
    """Per mode and metric: mean, std and the value per seed over the runs whose params equal `reference` but
    for split.seed (one run per seed: the first listed, i.e. the workspace before experiments)."""
    per_seed = {}
    for params, metrics in runs:
        if without_seed(params) == without_seed(reference):
            per_seed.setdefault(params["split"]["seed"], metrics)
    table = {"seeds": sorted(per_seed), "params": without_seed(reference)}
    for mode in MODES:
        values = fresh_results({seed: m.get(f"metrics/{mode}/test.json") for seed, m in sorted(per_seed.items())})
        if len(values) >= 2:
            table[mode] = {k: {"mean": statistics.mean(v[k] for v in values.values()),
                               "std": statistics.stdev(v[k] for v in values.values()),
                               "values": {str(seed): v[k] for seed, v in values.items()}} for k in METRICS}
    return table


def fresh_results(per_seed):
    """The seeds' test metrics that their own runs produced. A mode whose stages a seed's run did not reproduce
    (scratch, in the loop of this module's help) carries the first seed's file unchanged; two splits cannot give
    the very same metrics, so a result seen at a lower seed already does not count again."""
    fresh = {}
    for seed, result in per_seed.items():
        if result and all(k in result for k in METRICS) and result not in fresh.values():
            fresh[seed] = result
    return fresh


def seeds_for(path, params):
    """The seeds' table at `path` when it was computed for these params (split.seed aside; a stage that reads
    only some sections, like the report, is compared on those), else {}."""
    if not Path(path).exists():
        return {}
    table = read_json(path)
    recorded = table.get("params") or {}
    wanted = json.loads(json.dumps(without_seed(params)))
    return table if all(recorded.get(section) == value for section, value in wanted.items()) else {}


def markdown(table):
    lines = [f"Split seeds {', '.join(map(str, table['seeds']))} (mean ± standard deviation):", "",
             "| mode | top-1 | top-5 | mean per-class |", "|---|---|---|---|"]
    for mode in MODES:
        if mode in table:
            lines.append(f"| {mode} | " + " | ".join(f"{table[mode][k]['mean']:.4f} ± {table[mode][k]['std']:.4f}"
                                                    for k in METRICS) + " |")
    return "\n".join(lines)


@cli
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"also write {SEEDS_FILE} (read by the report stage)")
    args = parser.parse_args()
    table = spread(runs_from_dvc(), read_yaml("params.yaml"))
    if not any(mode in table for mode in MODES):
        raise UserError(f"fewer than two split seeds with test metrics (found seeds {table['seeds']}): queue and "
                        "run the seeds first, as this module's help shows")
    print(markdown(table))
    if args.write:
        write_json(SEEDS_FILE, table)
        print(f"wrote {SEEDS_FILE}")


if __name__ == "__main__":
    main()
