"""Classification metrics of a set of predictions, computed by scikit-learn."""

import numpy as np
import torch
from sklearn import metrics as skm


def compute_metrics(logits, labels, num_classes):
    """(summary dict, per-class dict of arrays, confusion matrix[true, predicted]) from logits and labels."""
    logits, labels = torch.as_tensor(logits).float(), torch.as_tensor(labels).long()
    preds, classes = logits.argmax(1).numpy(), np.arange(num_classes)
    y = labels.numpy()
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, preds, labels=classes, zero_division=0)
    summary = {  # the DVC metrics, few so `dvc exp show` stays readable; per_class.csv has precision and F1
        "top1_accuracy": float(skm.accuracy_score(y, preds)),
        # by hand: scikit-learn's top_k_accuracy_score warns for k >= classes and wants 1-D scores for two
        "top5_accuracy": (logits.topk(min(5, num_classes), 1).indices == labels[:, None]).any(1).float().mean().item(),
        # the standard Caltech-101 metric (the mean of the per-class recalls): overall accuracy is
        # inflated by the four big classes
        "mean_per_class_accuracy": float(skm.balanced_accuracy_score(y, preds)),
    }
    per_class = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return summary, per_class, skm.confusion_matrix(y, preds, labels=classes)
