import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn import metrics as skm

from caltech_transfer import engine
from caltech_transfer.evaluate import compute_metrics, evaluate
from caltech_transfer.plots import make_all
from caltech_transfer.predict import main as predict_main, predict
from caltech_transfer.split import read_manifest
from conftest import FAST, stage_params


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


@pytest.fixture(scope="module")
def trained(small_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    params = stage_params("train_finetune", **{**FAST, "train.finetune.epochs": 6, "train.finetune.batch_size": 4,
                                                "train.finetune_lr": 1e-3, "train.head_lr": 1e-3})
    engine.train("finetune", params, small_dataset / "split", small_dataset / "cache", out / "models" / "finetune.pt",
                 out / "metrics" / "finetune", out / "logs")
    return out


def test_evaluate_scores_the_test_split_and_never_trains(small_dataset, trained):
    checkpoint = trained / "models" / "finetune.pt"
    before = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    summary = evaluate(checkpoint, small_dataset / "split", small_dataset / "cache", trained / "metrics" / "finetune",
                       batch_size=8, precision="fp32", channels_last=False)
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() == before
    out = trained / "metrics" / "finetune"
    assert json.loads((out / "test.json").read_text()) == summary
    assert summary["images"] == 18 and summary["mean_per_class_accuracy"] >= 0.9
    test_paths = [path for path, _, _ in read_manifest(small_dataset / "split" / "test.csv")]
    predictions = (out / "predictions.csv").read_text().splitlines()
    assert predictions[0] == "path,true_class,predicted_class,confidence,top5_classes,top5_probabilities"
    assert [line.split(",")[0] for line in predictions[1:]] == test_paths
    confusion = (out / "confusion.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and confusion[1].split(",")[0].startswith("class_")
    assert np.load(out / "features.npy").shape == (18, 512)


def test_every_png_exists_decodes_and_is_not_blank(small_dataset, trained):
    evaluate(trained / "models" / "finetune.pt", small_dataset / "split", small_dataset / "cache",
             trained / "metrics" / "finetune", batch_size=8, precision="fp32", channels_last=False)
    written = make_all(trained / "metrics", small_dataset / "split", small_dataset / "cache", trained / "plots",
                       stage_params("plot")["plot"])
    names = {p.name for p in written}
    assert names == {"curves.png", "comparison.png", "confusion_finetune.png", "per_class_accuracy.png",
                     "mistakes.png", "embedding.png"}
    for path in written:
        pixels = np.asarray(Image.open(path).convert("L"))
        assert pixels.shape[0] > 200 and pixels.shape[1] > 200, path
        assert pixels.std() > 5, f"{path} looks blank"


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
