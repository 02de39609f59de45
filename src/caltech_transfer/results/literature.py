"""The study beside published Caltech-101 results: each published row with its paper, table and protocol, the
protocol compared with the one this run used (the params), and each comparison worded by our 95% interval over
split seeds and the paper's own spread where it gives one.

Two protocols appear in the literature. Kornblith et al. 2019 ("Do Better ImageNet Models Transfer Better?"), then
SimCLR (Chen et al. 2020) and BYOL (Grill et al. 2020): 102 classes (BACKGROUND_Google included), 30 training images
per class, hyperparameters chosen on a validation split taken from them, the final model retrained on all 30 and
scored once on every other image, mean per-class accuracy. Zeiler & Fergus 2014: 30 training images per class, at
most 50 test images per class, mean per-class accuracy over five random splits.

The numbers are as the papers print them; each row names the table it comes from."""

import math
from dataclasses import dataclass

from scipy import stats

from .spread import CONFIDENCE, PAIR_NAMES

KORNBLITH = "102 classes, 30 training images per class, the final fit on all 30, every other image as test"
ZEILER_FERGUS = "30 training images per class, at most 50 test images per class, 5 random splits, no validation split"


@dataclass(frozen=True)
class Published:
    source: str  # paper and table
    network: str
    mode: str  # the mode of ours it stands beside: feature_extract, finetune or scratch
    accuracy: float  # mean per-class accuracy
    std: float | None  # standard deviation over the paper's splits, where it gives one
    splits: int  # how many splits the paper averaged
    test_per_class: int | None  # the paper's cap on test images per class; None: every other image
    final_fit: bool  # trained on all training images after choosing the recipe on validation
    protocol: str  # the protocol in words


BYOL = dict(  # one table, one protocol: the rows differ in the network's training and the number
    source="Grill et al. 2020 (BYOL), Table 3, the supervised baseline of Chen et al. 2020 (SimCLR)",
    std=None,
    splits=1,
    test_per_class=None,
    final_fit=True,
    protocol=KORNBLITH,
)
ZEILER_FERGUS_TABLE = dict(
    source="Zeiler & Fergus 2014, Table 4", splits=5, test_per_class=50, final_fit=False, protocol=ZEILER_FERGUS
)
PUBLISHED = [
    Published(
        network="ResNet-50, supervised ImageNet weights, linear probe", mode="feature_extract", accuracy=0.945, **BYOL
    ),
    Published(network="ResNet-50, supervised ImageNet weights, fine-tuned", mode="finetune", accuracy=0.933, **BYOL),
    Published(network="ResNet-50 from random initialisation", mode="scratch", accuracy=0.726, **BYOL),
    Published(
        network="their ImageNet convnet, softmax on its features",
        mode="feature_extract",
        accuracy=0.865,
        std=0.005,
        **ZEILER_FERGUS_TABLE,
    ),
    Published(
        network="the same convnet trained from scratch",
        mode="scratch",
        accuracy=0.465,
        std=0.017,
        **ZEILER_FERGUS_TABLE,
    ),
]
MODE_NAMES = {**PAIR_NAMES, "scratch": "from scratch"}
# The ladder's goal: the supervised ResNet-50's linear probe on this protocol (the first row), with a backbone of at
# most the largest EfficientNet-Lite rung's size.
GOAL = (PUBLISHED[0].accuracy, 6.1e6, "ResNet-50's linear probe, Grill et al. 2020 Table 3")


def our_protocol(params):
    """This run's protocol in the terms the published rows are given in."""
    s = params["split"]
    return {
        "classes": 102 if s["include_background"] else 101,
        "train_per_class": s["train_per_class"],
        "test_per_class": s["test_per_class"],
        "final_fit": params["train"]["final_fit"],
    }


def differences(row, ours):
    """How our protocol differs from the published row's, in words (empty: the same protocol)."""
    found = []
    if ours["train_per_class"] != 30:
        found.append(f"we train on {ours['train_per_class']} images per class, they on 30")
    if row.protocol == KORNBLITH and ours["classes"] != 102:
        found.append("we leave BACKGROUND_Google out (split.include_background: false)")
    if ours["test_per_class"] != row.test_per_class:
        theirs = "every other image" if row.test_per_class is None else f"at most {row.test_per_class} per class"
        found.append(f"they test on {theirs} (split.test_per_class: {row.test_per_class or 'null'} gives it)")
    if ours["final_fit"] != row.final_fit:
        found.append("our final fit takes in the validation images" if ours["final_fit"] else "we hold 5 out per class")
    return found


def interval_of(accuracy, std, splits):
    """The 95% t-interval of a published mean over `splits` splits with standard deviation `std`."""
    half = float(stats.t.ppf((1 + CONFIDENCE) / 2, splits - 1)) * std / math.sqrt(splits)
    return accuracy - half, accuracy + half


def comparison(row, ours):
    """One sentence: ours (the seeds' summary of mean per-class accuracy) against the published row, above or below
    only where our interval and theirs (or their single number) do not overlap."""
    theirs = (row.accuracy, row.accuracy) if row.std is None else interval_of(row.accuracy, row.std, row.splits)
    if ours["n"] < 2:
        return f"one split of ours ({ours['mean']:.3f}) cannot be ranked against it"
    low, high = ours["low"], ours["high"]
    if low > theirs[1]:
        return f"ours is above it by {100 * (low - theirs[1]):.1f} points at least"
    if high < theirs[0]:
        return f"ours is below it by {100 * (theirs[0] - high):.1f} points at least"
    return "the intervals overlap: no difference can be claimed"


def section(seeds, scratch_test, params):
    """The report's section: our rows beside the published rows, protocol by protocol."""
    ours = {mode: seeds[mode]["mean_per_class_accuracy"] for mode in PAIR_NAMES}
    if scratch_test is not None:
        ours["scratch"] = {"n": 1, "mean": scratch_test["mean_per_class_accuracy"]}
    protocol = our_protocol(params)
    lines = [
        "## Beside the literature",
        "",
        f"Ours (`{params['model']['arch']}`): mean per-class test accuracy, the mean over {len(seeds['seeds'])} split "
        "seeds with its 95% interval (scratch: one split). Published: mean per-class accuracy as printed, ± the "
        "standard deviation over the paper's splits where it gives one.",
        "",
        "| published | network | protocol | theirs | ours | protocol differences | reading |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in PUBLISHED:
        if row.mode not in ours:
            continue
        mine = ours[row.mode]
        cell = f"{mine['mean']:.3f}" + (
            f" [{mine['low']:.3f}, {mine['high']:.3f}]" if mine["n"] > 1 else " (one split)"
        )
        theirs = f"{row.accuracy:.3f}" + (f" ± {row.std:.3f}" if row.std is not None else "")
        lines.append(
            f"| {row.source} | {row.network} | {row.protocol} | {theirs} | {MODE_NAMES[row.mode]}: {cell} | "
            f"{'; '.join(differences(row, protocol)) or 'none'} | {comparison(row, mine)} |"
        )
    lines += [
        "",
        "Their networks are not ours (ResNet-50 has 25.6 M parameters; the Zeiler-Fergus convnet is of 2013), so a "
        "row compares a recipe and a network together, on the protocol it names; our scratch run trains at "
        "train.scratch's budget, not theirs.",
    ]
    return "\n".join(lines)
