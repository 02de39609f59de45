"""The spread over split seeds: intervals, the paired difference of the modes and the sentence each allows."""

import statistics

import pytest
from scipy import stats

from caltech_transfer.results import spread
from caltech_transfer.results.report import seeds_section


def run(seed, top1, lr=1e-4, mode="finetune", device="CPU (2 threads)"):
    params = {"split": {"seed": seed, "scheme": "standard"}, "train": {"finetune_lr": lr}}
    metrics = {
        f"metrics/{mode}/test.json": {
            "top1_accuracy": top1,
            "top5_accuracy": 1.0,
            "mean_per_class_accuracy": top1 - 0.01,
        },
        f"metrics/{mode}/train/metrics.json": {"device": device, "precision": "fp32", "best_epoch": 3},
    }
    return params, metrics


def paired(differences, probe=0.93):
    """Runs of both modes on seeds 0.., fine-tuning `differences[seed]` above the probe."""
    runs = []
    for seed, difference in enumerate(differences):
        params, finetune = run(seed, probe + difference + 0.0013 * seed)
        _, probe_metrics = run(seed, probe + 0.0013 * seed, mode="feature_extract")
        runs.append((params, {**finetune, **probe_metrics}))
    return runs


def test_spread_over_seeds_of_otherwise_equal_runs(tmp_path):
    reference = run(0, 0.0)[0]
    runs = [run(0, 0.90), run(1, 0.92), run(2, 0.95), run(1, 0.10, lr=1e-3), run(2, 0.99)]  # last: a rerun of seed 2
    table = spread.spread(runs, reference)
    assert table["seeds"] == [0, 1, 2] and "feature_extract" not in table and "difference" not in table
    top1 = table["finetune"]["top1_accuracy"]
    values = [0.90, 0.92, 0.95]
    assert top1["mean"] == pytest.approx(statistics.mean(values))
    assert top1["std"] == pytest.approx(statistics.stdev(values))
    half = stats.t.ppf(0.975, 2) * statistics.stdev(values) / 3**0.5  # 4.30 standard errors at 3 seeds
    assert (top1["low"], top1["high"]) == pytest.approx(
        (statistics.mean(values) - half, statistics.mean(values) + half)
    )
    assert "| finetune | 0.9233 ± 0.0252 [0.8608, 0.9858] |" in spread.markdown(table)

    stale = {  # seed 0's files, carried unchanged
        "metrics/scratch/test.json": {k: 0.5 for k in spread.METRICS},
        "metrics/scratch/train/metrics.json": {"device": "CPU (2 threads)", "precision": "fp32"},
    }
    table = spread.spread([(p, {**m, **stale}) for p, m in runs], reference)
    assert "scratch" not in table and table["finetune"]["top1_accuracy"]["std"] == top1["std"]

    path = tmp_path / "seeds.json"
    spread.write_json(path, table)
    assert spread.seeds_for(path, reference) == table
    assert spread.seeds_for(path, run(7, 0.0)[0]) == table  # another seed of the same params
    assert spread.seeds_for(path, {"split": {"seed": 0, "scheme": "standard"}}) == table  # a stage's own sections
    assert spread.seeds_for(path, run(0, 0.0, lr=1e-3)[0]) == {}  # other params: the table does not apply
    new_scratch = {**reference, "train": {**reference["train"], "scratch_lr": 0.1, "scratch": {"epochs": 9}}}
    assert spread.seeds_for(path, new_scratch) == table  # a seed's run reruns no scratch stage
    assert spread.seeds_for(tmp_path / "absent.json", reference) == {}


def test_runs_with_the_archive_and_weights_read_from_other_places_are_one_study(tmp_path):
    """Locations decide nothing (the stages that read them write the same bytes from anywhere): runs that read the
    archive and the weights elsewhere join one table, and the report's own sections, without them, find it."""

    def located(seed, top1, source, weights):
        params, metrics = run(seed, top1)
        return {
            **params,
            "download": {"source": source, "checksum": ""},
            "model": {"arch": "a", "weights": weights},
        }, metrics

    runs = [located(0, 0.90, "../shared/c.zip", "../shared/w.pth"), located(1, 0.92, "https://x/c.zip", "imagenet")]
    reference = located(2, 0.0, "/home/me/c.zip", "/home/me/w.pth")[0]
    table = spread.spread(runs, reference)
    assert table["seeds"] == [0, 1]
    spread.write_json(tmp_path / "seeds.json", table)
    report_params = {"split": reference["split"], "model": {"arch": "a"}}  # the report stage reads no location
    assert spread.seeds_for(tmp_path / "seeds.json", report_params) == table
    assert spread.seeds_for(tmp_path / "seeds.json", {**report_params, "model": {"arch": "b"}}) == {}


def test_seeds_recorded_earlier_join_the_new_runs(tmp_path):
    """A clone holds the seeds' table but not the experiments that made it: new seeds add to it."""
    reference = run(0, 0.0)[0]
    path = tmp_path / "seeds.json"
    spread.write_json(path, spread.spread([run(0, 0.90), run(1, 0.92), run(2, 0.95)], reference))
    recorded = spread.seeds_for(path, reference)
    table = spread.spread([run(0, 0.90), run(3, 0.93), run(4, 0.94)], reference, recorded)
    assert table["seeds"] == [0, 1, 2, 3, 4]
    assert table["finetune"]["top1_accuracy"]["values"] == {"0": 0.90, "1": 0.92, "2": 0.95, "3": 0.93, "4": 0.94}
    other = spread.spread([run(3, 0.93, lr=1e-3), run(4, 0.94, lr=1e-3)], run(0, 0.0, lr=1e-3)[0], recorded)
    assert other["seeds"] == [3, 4]  # recorded for other params: not mixed in


def test_the_table_names_where_each_seed_trained(tmp_path):
    """The machine and precision come from each run's training summary, survive the recorded table, and are named
    once when all seeds share them, per seed when they differ."""
    reference = run(0, 0.0)[0]
    table = spread.spread([run(0, 0.90), run(1, 0.92)], reference)
    assert table["trained_on"] == {"finetune": {"0": "CPU (2 threads), fp32", "1": "CPU (2 threads), fp32"}}
    assert "Split seeds 0, 1, trained on CPU (2 threads), fp32:" in spread.markdown(table)

    path = tmp_path / "seeds.json"
    spread.write_json(path, table)
    later = spread.spread([run(2, 0.95, device="GPU")], reference, spread.seeds_for(path, reference))
    assert spread.trained_on(later) == "CPU (2 threads), fp32 (seeds 0, 1); GPU, fp32 (seeds 2)"
    assert "trained on CPU (2 threads), fp32 (seeds 0, 1); GPU, fp32 (seeds 2): mean ±" in seeds_section(later)

    without_summary = [(p, {k: v for k, v in m.items() if "train" not in k}) for p, m in [run(0, 0.9), run(1, 0.9)]]
    assert spread.spread(without_summary, reference)["seeds"] == []  # a result whose training is unknown: left out


def test_the_paired_difference_is_per_split_and_only_shared_seeds_count():
    runs = paired([0.010, 0.012, 0.008])
    runs.append((run(3, 0.99)[0], run(3, 0.99)[1]))  # fine-tuning alone on seed 3: no pair
    table = spread.spread(runs, runs[0][0])
    difference = table["difference"]["top1_accuracy"]
    assert difference["n"] == 3 and difference["values"] == pytest.approx({"0": 0.010, "1": 0.012, "2": 0.008})
    # the split-to-split spread (0.0013 per seed, in both modes) cancels in the pair: the interval is the pair's own
    assert difference["std"] == pytest.approx(0.002)


@pytest.mark.parametrize(
    "differences, wording",
    [
        ([0.010, 0.012, 0.008, 0.011, 0.009], "fine-tuning is ahead of feature extraction"),
        ([-0.010, -0.012, -0.008, -0.011, -0.009], "feature extraction is ahead of fine-tuning"),
        (
            [0.010, -0.012, 0.008, -0.011, 0.009],
            "no difference between fine-tuning and feature extraction is detected at 5 seeds",
        ),
        ([0.004, 0.001, 0.006, -0.002, 0.005], "no difference between fine-tuning and feature extraction is detected"),
    ],
)
def test_the_verdict_follows_the_interval(differences, wording):
    table = spread.spread(paired(differences), paired(differences)[0][0])
    difference = table["difference"]["top1_accuracy"]
    sentence = spread.verdict(difference, "top1_accuracy")
    assert sentence.startswith(f"On top-1 accuracy {wording}")
    assert ("ahead" in sentence) == (difference["low"] > 0 or difference["high"] < 0)
    assert f"{100 * difference['low']:+.2f} to {100 * difference['high']:+.2f}" in sentence
    assert sentence in spread.markdown(table)


def test_the_verdict_flips_where_the_interval_crosses_zero():
    """The same spread of differences moved past zero: 'ahead' exactly while the interval's low end is above it."""
    spreads = [0.003, -0.003, 0.002, -0.002, 0.0]
    seen = set()
    for shift in [x / 1000 for x in range(0, 8)]:
        table = spread.spread(paired([shift + s for s in spreads]), paired([0] * 5)[0][0])
        difference = table["difference"]["mean_per_class_accuracy"]
        ahead = "is ahead" in spread.verdict(difference, "mean_per_class_accuracy")
        assert ahead == (difference["low"] > 0), (shift, difference)
        seen.add(ahead)
    assert seen == {True, False}  # the shifts crossed zero


def test_the_verdict_counts_the_splits_each_mode_won_and_predicts_one_new_split():
    """Besides the interval of the mean: the wins on single splits and the 95% prediction interval of one more split
    (wider than the mean's by sqrt(n + 1): one split's spread is not averaged away)."""
    differences = [0.010, -0.012, 0.008, -0.011, 0.009]
    table = spread.spread(paired(differences), paired(differences)[0][0])
    difference = table["difference"]["top1_accuracy"]
    sentence = spread.verdict(difference, "top1_accuracy")
    assert "fine-tuning won 3 of the 5 splits, feature extraction 2" in sentence
    mean, std = statistics.mean(differences), statistics.stdev(differences)
    half = stats.t.ppf(0.975, 4) * std * (1 + 1 / 5) ** 0.5
    low, high = spread.prediction_interval(difference)
    assert (low, high) == pytest.approx((mean - half, mean + half))
    assert (high - low) / (difference["high"] - difference["low"]) == pytest.approx(6**0.5)
    assert f"expected between {100 * low:+.2f} and {100 * high:+.2f} points (95% prediction interval)" in sentence
    section = seeds_section(table)
    low, high = spread.prediction_interval(table["finetune"]["top1_accuracy"])
    assert f"| finetune | {low:.4f} to {high:.4f} |" in section
