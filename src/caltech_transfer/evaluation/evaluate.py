"""The `evaluate` stage: one trained mode on the test split. Never trains.

Writes test.json (DVC metrics), per_class.csv, confusion.csv (the form DVC's confusion template reads,
labelled with class names), predictions.csv and the test features (for the embedding plot). Every per-image
file names the image, in the same order as features.npy, so plots and reports join by path. The learning curve's
points are scored by the same function, each over the whole test split; a frozen backbone's test features are the
features stage's, never computed again."""

from pathlib import Path

import numpy as np
import torch

from ..batches.datasets import CachedImages, eval_batches, eval_transform
from ..core.errors import UserError
from ..core.files import write_csv, write_json
from ..data.split import read_classes
from ..model.checkpoints import load_classifier
from ..train.features import read_features
from ..train.modes import MODES
from ..train.runtime import Runtime
from .metrics import compute_metrics


def evaluate(checkpoint, mode, paths, runtime_params, batch_size=64, workers=0):
    """Evaluate one checkpoint of `mode` on the test split of `paths.split` and write its metrics files into
    `paths.metrics`. A frozen backbone is the pretrained one: its test features are read from `paths.features`."""
    runtime = Runtime(runtime_params)
    model, ckpt = load_classifier(checkpoint, runtime.device, mode)
    classes, prep = ckpt["classes"], ckpt["preprocessing"]
    if classes != read_classes(paths.split):
        raise UserError(
            f"{checkpoint} was trained on other classes than {paths.split}/classes.txt; retrain (dvc repro)"
        )
    test = CachedImages(paths.cache, paths.split, "test", eval_transform(prep))
    if MODES[ckpt["mode"]].frozen:
        features, labels = read_features(paths.features, ckpt["params"]["model"]["arch"], prep, test.rows), test.labels
    else:
        runtime.place(model)
        batches = eval_batches(test, prep, batch_size, runtime.inference_workers(workers))
        features, labels = runtime.infer(runtime.compiled(model.features), batches, f"evaluate {ckpt['mode']}")
    with torch.inference_mode():
        logits = model.head.float().cpu()(features)
    check_finite(logits, checkpoint, ckpt["mode"])
    summary, per_class, _ = compute_metrics(logits, labels, len(classes))
    write_outputs(Path(paths.metrics), summary, per_class, logits, labels, test.paths, classes, features)
    print(
        f"{ckpt['mode']}: top-1 {summary['top1_accuracy']:.4f}, top-5 {summary['top5_accuracy']:.4f}, "
        f"mean per-class {summary['mean_per_class_accuracy']:.4f} on {len(labels)} test images"
    )
    return summary


def check_finite(logits, checkpoint, mode):
    """Refuse outputs with NaN or infinity (a diverged training run) before any file or figure is made of them."""
    broken = int((~torch.isfinite(logits).all(1)).sum())
    if broken:
        raise UserError(
            f"{checkpoint} gives non-finite outputs (NaN or infinity) for {broken} of {len(logits)} test images: its "
            f"training diverged; retrain it with a lower learning rate (train.{mode}_lr) or train.{mode}.grad_clip"
        )


def write_outputs(out_dir, summary, per_class, logits, labels, paths, classes, features):
    write_json(out_dir / "test.json", summary)
    write_csv(
        out_dir / "per_class.csv",
        ["class_name", "precision", "recall", "f1", "support"],
        [
            [
                name,
                f"{per_class['precision'][i]:.4f}",
                f"{per_class['recall'][i]:.4f}",
                f"{per_class['f1'][i]:.4f}",
                int(per_class["support"][i]),
            ]
            for i, name in enumerate(classes)
        ],
    )
    preds = logits.argmax(1)
    write_csv(
        out_dir / "confusion.csv",
        ["path", "actual", "predicted"],
        [[path, classes[t], classes[p]] for path, t, p in zip(paths, labels.tolist(), preds.tolist())],
    )
    top_p, top_i = logits.softmax(1).topk(min(5, len(classes)), dim=1)
    write_csv(
        out_dir / "predictions.csv",
        ["path", "true_class", "predicted_class", "confidence", "top5_classes", "top5_probabilities"],
        [
            [
                path,
                classes[t],
                classes[i[0]],
                f"{p[0]:.4f}",
                "|".join(classes[c] for c in i),
                "|".join(f"{v:.4f}" for v in p),
            ]
            for path, t, p, i in zip(paths, labels.tolist(), top_p.tolist(), top_i.tolist())
        ],
    )
    np.save(out_dir / "features.npy", features.half().numpy())
