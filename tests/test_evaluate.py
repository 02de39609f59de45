import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from caltech_transfer.data.split import read_manifest
from caltech_transfer.evaluation.evaluate import evaluate
from caltech_transfer.evaluation.metrics import compute_metrics
from conftest import RUNTIME, scoring_paths


def test_metrics_equal_scikit_learn():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(7), [30, 5, 5, 12, 3, 8, 1])  # unbalanced, like Caltech-101
    logits = rng.normal(size=(len(labels), 7)) + 2.0 * np.eye(7)[labels] * rng.random((len(labels), 1))
    summary, per_class, matrix = compute_metrics(torch.tensor(logits), torch.tensor(labels), 7)
    preds = logits.argmax(1)
    assert summary["top1_accuracy"] == pytest.approx(skm.accuracy_score(labels, preds))
    assert summary["top5_accuracy"] == pytest.approx(skm.top_k_accuracy_score(labels, logits, k=5))
    assert summary["mean_per_class_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, preds))
    assert (matrix == skm.confusion_matrix(labels, preds)).all()
    report = skm.precision_recall_fscore_support(labels, preds, zero_division=0)
    for got, expected in zip(
        (per_class["precision"], per_class["recall"], per_class["f1"], per_class["support"]), report
    ):
        np.testing.assert_allclose(got, expected)
    assert sorted(summary) == ["mean_per_class_accuracy", "top1_accuracy", "top5_accuracy"]  # few DVC metrics
    assert summary["top1_accuracy"] != summary["mean_per_class_accuracy"]


def test_evaluate_scores_the_test_split_and_never_trains(small_dataset, trained, monkeypatch):
    import caltech_transfer.batches.datasets as datasets_module
    import caltech_transfer.evaluation.evaluate as evaluate_module

    checkpoint = trained / "models" / "finetune.pt"
    saved = torch.load(checkpoint, weights_only=True)["state_dict"]
    seen = {"splits": set(), "models": []}
    real_open, real_load = datasets_module.open_split, evaluate_module.load_classifier
    monkeypatch.setattr(
        datasets_module, "open_split", lambda c, s, *splits: seen["splits"].update(splits) or real_open(c, s, *splits)
    )

    def spy_load(*args):
        model, ckpt = real_load(*args)
        seen["models"].append(model)
        return model, ckpt

    monkeypatch.setattr(evaluate_module, "load_classifier", spy_load)
    monkeypatch.setattr(torch.Tensor, "backward", lambda *a, **k: pytest.fail("evaluate ran a backward pass"))
    summary = evaluate(
        checkpoint, "finetune", scoring_paths(small_dataset, trained / "metrics" / "finetune"), RUNTIME, batch_size=8
    )
    assert seen["splits"] == {"test"}
    after = seen["models"][0].state_dict()  # weights and BatchNorm statistics as they were trained
    assert all(torch.equal(after[k], v) for k, v in saved.items())
    out = trained / "metrics" / "finetune"
    assert json.loads((out / "test.json").read_text()) == summary
    assert summary["mean_per_class_accuracy"] >= 0.9
    test_paths = [path for path, _, _ in read_manifest(small_dataset / "split" / "test.csv")]
    predictions = (out / "predictions.csv").read_text().splitlines()
    assert len(predictions) == 1 + 18
    assert predictions[0] == "path,true_class,predicted_class,confidence,top5_classes,top5_probabilities"
    assert [line.split(",")[0] for line in predictions[1:]] == test_paths
    confusion = (out / "confusion.csv").read_text().splitlines()
    assert confusion[0] == "path,actual,predicted"
    assert [line.split(",")[0] for line in confusion[1:]] == test_paths
    assert all(line.split(",")[1] == line.split("/")[0] for line in confusion[1:])  # the true class of that image
    assert np.load(out / "features.npy").shape == (18, 512)


def test_evaluate_on_the_cpu_starts_no_loader_processes(small_dataset, trained, tmp_path, monkeypatch):
    """On the CPU loader processes would take the cores the network computes on; a GPU gets the ones asked for."""
    import caltech_transfer.batches.datasets as datasets_module
    from caltech_transfer.train.runtime import Runtime

    started = []
    real_loader = datasets_module.DataLoader
    monkeypatch.setattr(
        datasets_module,
        "DataLoader",
        lambda *args, **kwargs: started.append(kwargs["num_workers"]) or real_loader(*args, **kwargs),
    )
    evaluate(
        trained / "models" / "finetune.pt",
        "finetune",
        scoring_paths(small_dataset, tmp_path),
        RUNTIME,
        batch_size=8,
        workers=2,
    )
    assert started == [0]
    assert Runtime.inference_workers(SimpleNamespace(device="cuda"), 2) == 2
