import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn import metrics as skm

from caltech_transfer import engine
from caltech_transfer.errors import UserError
from caltech_transfer.evaluate import evaluate
from caltech_transfer.metrics import compute_metrics
from caltech_transfer.plots import make_all
from caltech_transfer.predict import main as predict_main, predict
from caltech_transfer.split import read_manifest
from conftest import LEARNS, data_paths, stage_params


def test_metrics_equal_scikit_learn():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(7), [30, 5, 5, 12, 3, 8, 1])  # unbalanced, like Caltech-101
    logits = rng.normal(size=(len(labels), 7)) + 2.0 * np.eye(7)[labels] * rng.random((len(labels), 1))
    summary, per_class, matrix = compute_metrics(torch.tensor(logits), torch.tensor(labels), 7)
    preds = logits.argmax(1)
    assert summary["top1_accuracy"] == pytest.approx(skm.accuracy_score(labels, preds))
    assert summary["top5_accuracy"] == pytest.approx(skm.top_k_accuracy_score(labels, logits, k=5))
    assert summary["mean_per_class_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, preds))
    assert summary["loss"] == pytest.approx(skm.log_loss(labels, torch.tensor(logits).softmax(1).numpy()), rel=1e-5)
    assert (matrix == skm.confusion_matrix(labels, preds)).all()
    report = skm.precision_recall_fscore_support(labels, preds, zero_division=0)
    for got, expected in zip((per_class["precision"], per_class["recall"], per_class["f1"], per_class["support"]), report):
        np.testing.assert_allclose(got, expected)
    assert summary["macro_f1"] == pytest.approx(skm.f1_score(labels, preds, average="macro", zero_division=0))
    assert summary["top1_accuracy"] != summary["mean_per_class_accuracy"]


RUNTIME = {"device": "cpu", "precision": "fp32", "channels_last": False, "compile": False}


@pytest.fixture(scope="module")
def trained(small_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    params = stage_params("train_finetune", **LEARNS)
    paths = data_paths(small_dataset, out / "models", "finetune")
    paths.metrics = out / "metrics" / "finetune"
    engine.train("finetune", params, paths)
    return out


def test_evaluate_scores_the_test_split_and_never_trains(small_dataset, trained, monkeypatch):
    import caltech_transfer.data
    import caltech_transfer.evaluate as evaluate_module

    checkpoint = trained / "models" / "finetune.pt"
    saved = torch.load(checkpoint, weights_only=True)["state_dict"]
    seen = {"splits": set(), "models": []}
    real_open, real_load = caltech_transfer.data.open_cache, evaluate_module.load_classifier
    monkeypatch.setattr(caltech_transfer.data, "open_cache",
                        lambda c, s, split: seen["splits"].add(split) or real_open(c, s, split))
    def spy_load(*args):
        model, ckpt = real_load(*args)
        seen["models"].append(model)
        return model, ckpt

    monkeypatch.setattr(evaluate_module, "load_classifier", spy_load)
    monkeypatch.setattr(torch.Tensor, "backward", lambda *a, **k: pytest.fail("evaluate ran a backward pass"))
    summary = evaluate(checkpoint, small_dataset / "split", small_dataset / "cache", trained / "metrics" / "finetune",
                       RUNTIME, batch_size=8)
    assert seen["splits"] == {"test"}
    after = seen["models"][0].state_dict()  # weights and BatchNorm statistics as they were trained
    assert all(torch.equal(after[k], v) for k, v in saved.items())
    out = trained / "metrics" / "finetune"
    assert json.loads((out / "test.json").read_text()) == summary
    assert summary["images"] == 18 and summary["mean_per_class_accuracy"] >= 0.9
    test_paths = [path for path, _, _ in read_manifest(small_dataset / "split" / "test.csv")]
    predictions = (out / "predictions.csv").read_text().splitlines()
    assert predictions[0] == "path,true_class,predicted_class,confidence,top5_classes,top5_probabilities"
    assert [line.split(",")[0] for line in predictions[1:]] == test_paths
    confusion = (out / "confusion.csv").read_text().splitlines()
    assert confusion[0] == "path,actual,predicted"
    assert [line.split(",")[0] for line in confusion[1:]] == test_paths
    assert all(line.split(",")[1] == line.split("/")[0] for line in confusion[1:])  # the true class of that image
    assert np.load(out / "features.npy").shape == (18, 512)


def test_every_png_draws_its_data(small_dataset, trained, tmp_path):
    """Each figure changes when the numbers it plots change: a figure whose data went missing would not."""
    import shutil

    evaluate(trained / "models" / "finetune.pt", small_dataset / "split", small_dataset / "cache",
             trained / "metrics" / "finetune", RUNTIME, batch_size=8)
    params = stage_params("plot")["plot"]
    written = make_all(trained / "metrics", small_dataset / "split", small_dataset / "cache", tmp_path / "a", params)
    assert {p.name for p in written} == {"curves.png", "comparison.png", "confusion_finetune.png",
                                         "per_class_accuracy.png", "mistakes.png", "embedding.png"}
    other = tmp_path / "metrics"
    shutil.copytree(trained / "metrics", other)
    _perturb(other / "finetune")
    again = make_all(other, small_dataset / "split", small_dataset / "cache", tmp_path / "b", params)
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
    with pytest.raises(UserError, match="scratch/predictions.csv not found: dvc pull it, or run dvc repro evaluate@scratch"):
        make_all(tmp_path / "metrics", tmp_path / "split", tmp_path / "cache", tmp_path / "plots", {})


def test_predict_fits_new_images_as_the_cache_did(small_dataset, trained):
    assert json.loads((small_dataset / "cache" / "meta.json").read_text())["fit"] == "pad"
    assert torch.load(trained / "models" / "finetune.pt", weights_only=True)["preprocessing"]["fit"] == "pad"


def test_predict_returns_the_known_class(small_dataset, trained, tmp_path, capsys):
    from conftest import make_tree
    fresh = make_tree(tmp_path / "new", per_class=(2, 2, 2), background=0, extras=False, seed=7)
    (fresh / "class_00" / "notes.txt").write_text("not an image")
    results = predict(trained / "models" / "finetune.pt", [fresh])
    good = [(path, top) for path, top, error in results if top]
    assert len(good) == 6
    assert all(top[0][0] == path.parent.name for path, top in good)
    assert all(len(top) == 3 and abs(sum(p for _, p in top) - 1) < 1e-4 for _, top in good)
    predict_main([str(trained / "models" / "finetune.pt"), str(fresh), "--csv", str(tmp_path / "out.csv")])
    captured = capsys.readouterr()
    assert "notes.txt: skipped, not a readable image" in captured.err
    assert "class_01/image_0001.jpg: class_01" in captured.out
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 1 + 6 * 3


def test_training_curves_draw_each_series(tmp_path):
    from caltech_transfer.plots import curves

    rows = [{"epoch": e, "train_loss": 2 / e, "val_loss": 2.5 / e, "train_accuracy": 0.2 * e, "val_accuracy": 0.15 * e}
            for e in range(1, 5)]
    curves({"finetune": rows}, tmp_path / "base.png")
    base = np.asarray(Image.open(tmp_path / "base.png").convert("L"), dtype=float)
    for key in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        curves({"finetune": [{**r, key: r[key] * (0.5 if r["epoch"] > 1 else 1)} for r in rows]}, tmp_path / "c.png")
        changed = np.asarray(Image.open(tmp_path / "c.png").convert("L"), dtype=float)
        assert base.shape != changed.shape or np.abs(base - changed).mean() > 0.05, f"{key} is not drawn"


def test_evaluate_on_the_cpu_starts_no_loader_processes(small_dataset, trained, tmp_path, monkeypatch):
    """On the CPU loader processes would take the cores the network computes on; a GPU gets the ones asked for."""
    import caltech_transfer.data
    from caltech_transfer.runtime import Runtime

    started = []
    real_loader = caltech_transfer.data.DataLoader
    monkeypatch.setattr(caltech_transfer.data, "DataLoader",
                        lambda *args, **kwargs: started.append(kwargs["num_workers"]) or real_loader(*args, **kwargs))
    evaluate(trained / "models" / "finetune.pt", small_dataset / "split", small_dataset / "cache", tmp_path, RUNTIME,
             batch_size=8, workers=2)
    assert started == [0]
    assert Runtime.inference_workers(SimpleNamespace(device="cuda"), 2) == 2
