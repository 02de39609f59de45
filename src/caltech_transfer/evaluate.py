"""The `evaluate` stage: one trained mode on the test split. Never trains.

Writes test.json (DVC metrics), per_class.csv, confusion.csv (the form DVC's confusion template reads,
labelled with class names), predictions.csv and the test features (for the embedding plot)."""
import csv
import json
from pathlib import Path

import numpy as np
import torch

from .data import CachedImages, eval_transform, make_loader
from .engine import autocast_dtype, resolve_device, run_batches
from .errors import UserError
from .models import load_classifier
from .split import read_classes


def confusion(labels, preds, num_classes):
    """matrix[true, predicted] counts."""
    return np.bincount(labels * num_classes + preds, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def compute_metrics(logits, labels, num_classes):
    """(summary dict, per-class dict of arrays, confusion matrix) from logits and true labels."""
    logits, labels = torch.as_tensor(logits).float(), torch.as_tensor(labels).long()
    preds = logits.argmax(1)
    k = min(5, num_classes)
    top5 = (logits.topk(k, dim=1).indices == labels[:, None]).any(1).float().mean().item()
    matrix = confusion(labels.numpy(), preds.numpy(), num_classes)
    support = matrix.sum(1)
    predicted = matrix.sum(0)
    hits = np.diag(matrix)
    recall = np.divide(hits, support, out=np.zeros(num_classes), where=support > 0)
    precision = np.divide(hits, predicted, out=np.zeros(num_classes), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(num_classes),
                   where=precision + recall > 0)
    present = support > 0
    summary = {
        "top1_accuracy": (preds == labels).float().mean().item(),
        "top5_accuracy": top5,
        # the standard Caltech-101 metric: overall accuracy is inflated by the four big classes
        "mean_per_class_accuracy": float(recall[present].mean()),
        "loss": torch.nn.functional.cross_entropy(logits, labels).item(),
        "macro_precision": float(precision[present].mean()),
        "macro_recall": float(recall[present].mean()),
        "macro_f1": float(f1[present].mean()),
        "images": int(labels.numel()),
    }
    per_class = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return summary, per_class, matrix


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def evaluate(checkpoint, split_dir, cache_dir, out_dir, batch_size=64, device="auto", precision="auto",
             channels_last=True, workers=0):
    """Evaluate one checkpoint on the test split and write its metrics files into out_dir."""
    device = resolve_device(device)
    amp_dtype = autocast_dtype(precision, device)
    model, ckpt = load_classifier(checkpoint, device)
    classes = ckpt["classes"]
    if classes != read_classes(split_dir):
        raise UserError(f"{checkpoint} was trained on other classes than {split_dir}/classes.txt; retrain (dvc repro)")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    test = CachedImages(cache_dir, split_dir, "test", eval_transform(ckpt["preprocessing"]))
    features, labels = run_batches(model.features, make_loader(test, batch_size, workers=workers), device,
                                   amp_dtype, f"evaluate {ckpt['mode']}", channels_last)
    with torch.inference_mode():
        logits = model.head.float().cpu()(features)
    summary, per_class, matrix = compute_metrics(logits, labels, len(classes))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "test.json").write_text(json.dumps(summary, indent=2) + "\n")
    write_csv(out_dir / "per_class.csv", ["class_name", "precision", "recall", "f1", "support"],
              [[name, f"{per_class['precision'][i]:.4f}", f"{per_class['recall'][i]:.4f}",
                f"{per_class['f1'][i]:.4f}", int(per_class["support"][i])] for i, name in enumerate(classes)])
    preds = logits.argmax(1)
    write_csv(out_dir / "confusion.csv", ["actual", "predicted"],
              [[classes[t], classes[p]] for t, p in zip(labels.tolist(), preds.tolist())])
    probs = logits.softmax(1)
    top_p, top_i = probs.topk(min(5, len(classes)), dim=1)
    write_csv(out_dir / "predictions.csv",
              ["path", "true_class", "predicted_class", "confidence", "top5_classes", "top5_probabilities"],
              [[path, classes[t], classes[i[0]], f"{p[0]:.4f}", "|".join(classes[c] for c in i),
                "|".join(f"{v:.4f}" for v in p)]
               for path, t, p, i in zip(test.paths, labels.tolist(), top_p.tolist(), top_i.tolist())])
    np.save(out_dir / "features.npy", features.half().numpy())
    print(f"{ckpt['mode']}: top-1 {summary['top1_accuracy']:.4f}, top-5 {summary['top5_accuracy']:.4f}, "
          f"mean per-class {summary['mean_per_class_accuracy']:.4f} on {summary['images']} test images")
    return summary
