"""The study beside published results: protocols compared from the params, readings worded by intervals."""

import pytest

from caltech_transfer.results.literature import KORNBLITH, PUBLISHED, comparison, differences, our_protocol, section
from caltech_transfer.results.spread import summary
from conftest import stage_params


def kornblith_params(**split):
    params = stage_params("report", **{"split.include_background": True, "train.final_fit": True})
    params["split"].update(split)
    return params


def test_published_rows_are_papers_with_their_table():
    assert all(" 20" in row.source and "Table" in row.source for row in PUBLISHED)
    assert not any(row.source.startswith(("..", "/")) or "README" in row.source for row in PUBLISHED)


def test_the_defaults_of_the_literature_protocol_differ_from_kornblith_in_nothing():
    kornblith = [row for row in PUBLISHED if row.protocol == KORNBLITH]
    assert {row.mode for row in kornblith} == {"feature_extract", "finetune", "scratch"}
    assert all(differences(row, our_protocol(kornblith_params())) == [] for row in kornblith)
    zeiler = next(row for row in PUBLISHED if row.test_per_class == 50)
    assert differences(zeiler, our_protocol(kornblith_params(test_per_class=50))) == [
        "our final fit takes in the validation images"
    ]
    found = differences(kornblith[0], our_protocol(stage_params("report")))  # the tests' params: 101 classes, no fit
    assert found == ["we leave BACKGROUND_Google out (split.include_background: false)", "we hold 5 out per class"]


@pytest.mark.parametrize(
    "values, reading",
    [
        ([0.95, 0.952, 0.954], "ours is above it by 0.2 points at least"),  # interval [0.9470, 0.9570]
        ([0.92, 0.925, 0.93], "ours is below it by 0.8 points at least"),  # interval [0.9126, 0.9374]
        ([0.94, 0.945, 0.95], "the intervals overlap: no difference can be claimed"),
        ([0.96], "one split of ours (0.960) cannot be ranked against it"),
    ],
)
def test_a_reading_is_an_interval_against_a_number_or_a_published_spread(values, reading):
    probe = PUBLISHED[0]  # 0.945, no spread printed
    assert comparison(probe, summary(values)) == reading
    zeiler = next(row for row in PUBLISHED if row.mode == "feature_extract" and row.std)  # 0.865 ± 0.005 over 5
    assert comparison(zeiler, summary([0.866, 0.868, 0.870])) == "the intervals overlap: no difference can be claimed"


def test_the_section_sets_each_mode_beside_its_published_rows():
    seeds = {"seeds": [0, 1, 2]} | {
        mode: {"mean_per_class_accuracy": summary([0.93, 0.935, 0.94])} for mode in ("feature_extract", "finetune")
    }
    text = section(seeds, {"mean_per_class_accuracy": 0.5}, kornblith_params())
    rows = [line for line in text.splitlines() if line.startswith("| ") and "published" not in line]
    assert len(rows) == len(PUBLISHED)
    assert "fine-tuning: 0.935 [0.923, 0.947]" in next(r for r in rows if "fine-tuned" in r)
    assert "from scratch: 0.500 (one split)" in next(r for r in rows if "random initialisation" in r)
    assert "| none |" in rows[0]
    assert len(section(seeds, None, kornblith_params()).splitlines()) == len(text.splitlines()) - 2
