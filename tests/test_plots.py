"""The plot stage's figures: each draws its data, and a missing input says how to get it."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from caltech_transfer.core.errors import UserError
from caltech_transfer.evaluation.evaluate import evaluate
from caltech_transfer.results.plots import curves, make_all
from conftest import RUNTIME, scoring_paths, stage_params

MODES = ("finetune", "scratch", "feature_extract")


def runs(metrics):
    return {m: metrics / m for m in MODES}


def test_every_png_draws_its_data(small_dataset, trained, tmp_path):
    """Each figure changes when the numbers it plots change: a figure whose data went missing would not."""
    evaluate(
        trained / "models" / "finetune.pt",
        "finetune",
        scoring_paths(small_dataset, trained / "metrics" / "finetune"),
        RUNTIME,
        batch_size=8,
    )
    params = stage_params("plot")["plot"]
    written = make_all(
        runs(trained / "metrics"), small_dataset / "split", small_dataset / "cache", tmp_path / "a", params
    )
    assert {p.name for p in written} == {
        "curves.png",
        "comparison.png",
        "confusion_finetune.png",
        "per_class_accuracy.png",
        "mistakes.png",
        "embedding.png",
    }
    other = tmp_path / "metrics"
    shutil.copytree(trained / "metrics", other)
    _perturb(other / "finetune")
    again = make_all(runs(other), small_dataset / "split", small_dataset / "cache", tmp_path / "b", params)
    for first, second in zip(written, again):
        a, b = (np.asarray(Image.open(p).convert("L"), dtype=float) for p in (first, second))
        assert a.shape[0] > 200 and a.shape[1] > 200, first
        assert a.shape != b.shape or np.abs(a - b).mean() > 0.05, f"{first.name} does not follow its data"


def _perturb(metrics):
    """Other numbers in every file the figures read: curves, test metrics, predictions, features."""
    history = (metrics / "history.tsv").read_text().splitlines()
    header = history[0].split("\t")
    rows = [line.split("\t") for line in history[1:]]
    for row in rows:
        for column in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
            row[header.index(column)] = str(float(row[header.index(column)]) * 0.5)
    (metrics / "history.tsv").write_text("\n".join(["\t".join(header)] + ["\t".join(r) for r in rows]) + "\n")
    results = json.loads((metrics / "test.json").read_text())
    (metrics / "test.json").write_text(json.dumps({k: v * 0.5 for k, v in results.items()}))
    lines = (metrics / "predictions.csv").read_text().splitlines()
    shifted = []
    for n, line in enumerate(lines[1:]):  # every other image now predicted as the next class, confidently
        cells = line.split(",")
        if n % 2 == 0:
            cells[2] = f"class_{(int(cells[1][-2:]) + 1) % 3:02d}"
            cells[3] = "0.9900"
        shifted.append(",".join(cells))
    (metrics / "predictions.csv").write_text("\n".join([lines[0]] + shifted) + "\n")
    features = np.load(metrics / "features.npy")
    np.save(metrics / "features.npy", np.random.default_rng(0).normal(size=features.shape).astype(features.dtype))


def test_plots_without_a_modes_predictions_say_how_to_get_them(tmp_path):
    (tmp_path / "split").mkdir()
    (tmp_path / "split" / "classes.txt").write_text("a\nb\n")
    (tmp_path / "metrics" / "scratch").mkdir(parents=True)
    (tmp_path / "metrics" / "scratch" / "test.json").write_text("{}")  # in Git; predictions.csv was not pulled
    with pytest.raises(UserError, match="scratch/predictions.csv not found: dvc pull it, or run dvc repro"):
        make_all(runs(tmp_path / "metrics"), tmp_path / "split", tmp_path / "cache", tmp_path / "plots", {})


def test_training_curves_draw_each_series(tmp_path):
    rows = [
        {"epoch": e, "train_loss": 2 / e, "val_loss": 2.5 / e, "train_accuracy": 0.2 * e, "val_accuracy": 0.15 * e}
        for e in range(1, 5)
    ]
    curves({"finetune": rows}, tmp_path / "base.png")
    base = np.asarray(Image.open(tmp_path / "base.png").convert("L"), dtype=float)
    for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        curves({"finetune": [{**r, key: r[key] * (0.5 if r["epoch"] > 1 else 1)} for r in rows]}, tmp_path / "c.png")
        changed = np.asarray(Image.open(tmp_path / "c.png").convert("L"), dtype=float)
        assert base.shape != changed.shape or np.abs(base - changed).mean() > 0.05, f"{key} is not drawn"
