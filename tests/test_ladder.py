"""The backbone ladder's table: the goal read from each backbone's results within the parameter budget."""

from caltech_transfer.results.ladder import goal_sentence, markdown
from caltech_transfer.results.spread import summary


def row(arch, parameters, probe, tuned, top1=None):
    return {
        "arch": arch,
        "parameters": parameters,
        "imagenet_top1": top1,
        "feature_extract": {"mean_per_class_accuracy": summary(probe), "top1_accuracy": summary(probe)},
        "feature_extract_seconds": 120.0,
        "finetune": {"mean_per_class_accuracy": tuned, "top1_accuracy": tuned},
        "finetune_seconds": 1800.0,
        "trained_on": "cpu, fp32",
    }


def table(*rows):
    return {"seeds": [0, 1, 2], "backbones": {f"b{i}": r for i, r in enumerate(rows)}}


def test_the_goal_is_reached_only_within_the_parameter_budget():
    small = row("small", 4.7e6, [0.93, 0.935, 0.94], 0.94)
    large = row("large", 25e6, [0.95, 0.955, 0.96], 0.96)
    sentence = goal_sentence(table(small, large), 0.945, 6.1e6, "a probe")
    assert sentence.startswith("Goal: 0.945 mean per-class (a probe) with at most 6.1 M parameters: not reached.")
    assert "feature extraction with `small` 0.9350 [0.9226, 0.9474] over the seeds" in sentence
    assert "fine-tuning with `small` 0.9400 on one split" in sentence
    tuned = row("tuned", 6.0e6, [0.93, 0.935, 0.94], 0.946)
    assert ": reached. Best within the budget" in goal_sentence(table(small, tuned), 0.945, 6.1e6, "a probe")
    assert (
        goal_sentence(table(large), 0.945, 6.1e6, "a probe")
        == "No backbone of the ladder has at most 6.1 M parameters."
    )


def test_the_table_has_a_row_per_backbone_with_its_interval():
    text = markdown(table(row("timm/a", 4.7e6, [0.93, 0.935, 0.94], 0.94, 0.751)), (0.945, 6.1e6, "x"), "report/l.png")
    line = next(line for line in text.splitlines() if line.startswith("| `timm/a`"))
    assert "| 4.70 M | 75.1% | 0.9350 [0.9226, 0.9474] | 0.9400 | 2.0 min, 30.0 min | cpu, fp32 |" in line
    assert text.endswith("![backbone ladder](report/l.png)")
