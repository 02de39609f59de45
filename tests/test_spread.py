"""The spread over split seeds: intervals, the paired difference of the modes and the sentence each allows."""

import json
import statistics

import pytest
from scipy import stats

from caltech_transfer.core.errors import UserError
from caltech_transfer.core.files import write_json
from caltech_transfer.results import spread
from caltech_transfer.results.report import seeds_section


def write_seed(seeds_dir, seed, mode, top1, device="CPU (2 threads)"):
    """A seed's run of `mode` as its train and evaluate stages leave it: test.json and DVCLive's summary."""
    folder = seeds_dir / str(seed) / mode
    write_json(
        folder / "test.json", {"top1_accuracy": top1, "top5_accuracy": 1.0, "mean_per_class_accuracy": top1 - 0.01}
    )
    write_json(folder / "train" / "metrics.json", {"device": device, "precision": "fp32", "best_epoch": 3})


def paired(differences, root, probe=0.93):
    """The seeds' table of both modes on seeds 0.., fine-tuning `differences[seed]` above the probe, each split
    0.0013 per seed easier than the last."""
    for seed, difference in enumerate(differences):
        write_seed(root, seed, "finetune", probe + difference + 0.0013 * seed)
        write_seed(root, seed, "feature_extract", probe + 0.0013 * seed)
    return spread.spread(spread.seed_results(range(len(differences)), root))


def test_spread_over_the_seeds_study_seeds_names(tmp_path):
    for seed, top1 in [(0, 0.90), (1, 0.92), (2, 0.95), (3, 0.10)]:  # seed 3: left over from an earlier study
        write_seed(tmp_path, seed, "finetune", top1)
        write_seed(tmp_path, seed, "feature_extract", top1 - 0.02)
    table = spread.write_seeds([0, 1, 2], tmp_path, tmp_path / "seeds.json")
    assert json.loads((tmp_path / "seeds.json").read_text()) == table
    s = table["finetune"]["top1_accuracy"]
    values = [0.90, 0.92, 0.95]
    assert table["seeds"] == [0, 1, 2] and s["n"] == 3
    assert s["mean"] == pytest.approx(statistics.mean(values)) and s["std"] == pytest.approx(statistics.stdev(values))
    half = stats.t.ppf(0.975, 2) * statistics.stdev(values) / 3**0.5
    assert (s["low"], s["high"]) == pytest.approx((statistics.mean(values) - half, statistics.mean(values) + half))
    assert table["trained_on"] == "CPU (2 threads), fp32"
    assert "| finetune | 0.9233 ± 0.0252 [0.8608, 0.9858] | " in seeds_section(table)


def test_a_seed_whose_stages_have_not_run_is_named(tmp_path):
    write_seed(tmp_path, 0, "finetune", 0.9)
    write_seed(tmp_path, 0, "feature_extract", 0.9)
    with pytest.raises(
        UserError, match=r"1/feature_extract/test.json .*not found: .*dvc repro evaluate@1-feature_extract"
    ):
        spread.seed_results([0, 1], tmp_path)


def test_one_seed_gives_values_and_no_interval(tmp_path):
    table = paired([0.01], tmp_path)
    assert table["finetune"]["top1_accuracy"] == {"n": 1, "mean": pytest.approx(0.94)}
    assert seeds_section(table).startswith("One split seed (`study.seeds: [0]`) gives no spread")


def test_seeds_that_trained_on_other_machines_are_named(tmp_path):
    paired([0.01, 0.02], tmp_path)
    write_seed(tmp_path, 2, "finetune", 0.95, device="GPU")
    write_seed(tmp_path, 2, "feature_extract", 0.94, device="GPU")
    table = spread.spread(spread.seed_results([0, 1, 2], tmp_path))
    assert table["trained_on"] == "CPU (2 threads), fp32 (seeds 0, 1); GPU, fp32 (seeds 2)"


def test_the_paired_difference_is_per_split(tmp_path):
    table = paired([0.010, 0.012, 0.008], tmp_path)
    difference = table["difference"]["top1_accuracy"]
    assert difference["n"] == 3 and difference["mean"] == pytest.approx(0.010)
    # the split-to-split spread (0.0013 per seed, in both modes) cancels in the pair: the interval is the pair's own
    assert difference["std"] == pytest.approx(0.002)
    assert difference["wins"] == {"finetune": 3, "feature_extract": 0}


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
def test_the_verdict_follows_the_interval(differences, wording, tmp_path):
    table = paired(differences, tmp_path)
    difference = table["difference"]["top1_accuracy"]
    sentence = spread.verdict(difference, "top1_accuracy")
    assert sentence.startswith(f"On top-1 accuracy {wording}")
    assert ("ahead" in sentence) == (difference["low"] > 0 or difference["high"] < 0)
    assert f"{100 * difference['low']:+.2f} to {100 * difference['high']:+.2f}" in sentence
    assert sentence in seeds_section(table)


def test_the_verdict_flips_where_the_interval_crosses_zero(tmp_path):
    """The same spread of differences moved past zero: 'ahead' exactly while the interval's low end is above it."""
    spreads = [0.003, -0.003, 0.002, -0.002, 0.0]
    seen = set()
    for shift in [x / 1000 for x in range(0, 8)]:
        table = paired([shift + s for s in spreads], tmp_path / str(shift))
        difference = table["difference"]["mean_per_class_accuracy"]
        ahead = "is ahead" in spread.verdict(difference, "mean_per_class_accuracy")
        assert ahead == (difference["low"] > 0), (shift, difference)
        seen.add(ahead)
    assert seen == {True, False}  # the shifts crossed zero


def test_the_verdict_counts_the_splits_each_mode_won_and_predicts_one_new_split(tmp_path):
    """Besides the interval of the mean: the wins on single splits and the 95% prediction interval of one more split
    (wider than the mean's by sqrt(n + 1): one split's spread is not averaged away)."""
    differences = [0.010, -0.012, 0.008, -0.011, 0.009]
    table = paired(differences, tmp_path)
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
    assert f"{table['finetune']['top1_accuracy']['high']:.4f}] | {low:.4f} to {high:.4f} |" in section
