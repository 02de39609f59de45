"""The `plot` stage: PNG figures comparing the three modes."""

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from ..core.errors import UserError  # noqa: E402
from ..core.files import read_csv, read_json  # noqa: E402
from ..core.layout import MODES  # noqa: E402
from ..data.split import open_split, read_classes  # noqa: E402

COLOURS = {"finetune": "tab:blue", "scratch": "tab:orange", "feature_extract": "tab:green"}


def _save(fig, path):
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def curves(histories, path):
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for mode, rows in histories.items():
        epochs = [int(r["epoch"]) for r in rows]
        for ax, metric in zip(axes, ("loss", "accuracy")):
            ax.plot(
                epochs, [float(r[f"train_{metric}"]) for r in rows], "--", color=COLOURS[mode], label=f"{mode} train"
            )
            if f"val_{metric}" in rows[0]:  # a final fit has no validation
                ax.plot(
                    epochs, [float(r[f"val_{metric}"]) for r in rows], "-", color=COLOURS[mode], label=f"{mode} val"
                )
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set(xlabel="epoch", ylabel=metric, title=f"Training {metric}, and validation where a run has it")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)


def comparison(results, path):
    keys = [("top1_accuracy", "top-1"), ("top5_accuracy", "top-5"), ("mean_per_class_accuracy", "mean per-class")]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / max(1, len(results))
    for n, (mode, metrics) in enumerate(results.items()):
        xs = np.arange(len(keys)) + n * width
        bars = ax.bar(xs, [metrics[k] for k, _ in keys], width, label=mode, color=COLOURS[mode])
        ax.bar_label(bars, fmt="%.3f", fontsize=8)
    ax.set_xticks(np.arange(len(keys)) + width * (len(results) - 1) / 2, [label for _, label in keys])
    ax.set(ylim=(0, 1.08), ylabel="test accuracy", title="Test accuracy by mode")
    ax.legend()
    _save(fig, path)


def confusion_heatmap(matrix, classes, title, path):
    """Row-normalised (recall per true class), big enough to read 101 labels."""
    rows = matrix.sum(1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    side = max(6, len(classes) * 0.2)
    fig, ax = plt.subplots(figsize=(side + 2, side))
    image = ax.imshow(normalised, cmap="viridis", vmin=0, vmax=1)
    fontsize = 10 if len(classes) <= 20 else 6
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(len(classes)), classes, fontsize=fontsize)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    fig.colorbar(image, ax=ax, fraction=0.03, label="fraction of the true class")
    _save(fig, path)


def per_class_accuracy(recalls, classes, path):
    order = np.argsort(next(iter(recalls.values())))  # sorted by the first mode's accuracy
    fig, ax = plt.subplots(figsize=(max(8, len(classes) * 0.22), 5))
    for mode, recall in recalls.items():
        ax.plot(range(len(classes)), recall[order], "o-", ms=3, color=COLOURS[mode], label=mode)
    ax.set_xticks(range(len(classes)), [classes[i] for i in order], rotation=90, fontsize=7)
    ax.set(
        ylabel="test accuracy (recall)",
        ylim=(-0.02, 1.02),
        title=f"Per-class test accuracy, sorted by {next(iter(recalls))}",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, path)


def mistakes(predictions, image, count, title, path):
    """The most confident wrong predictions, with true and predicted class names; image(path) -> pixels."""
    wrong = [(float(r["confidence"]), r["path"], r) for r in predictions if r["true_class"] != r["predicted_class"]]
    wrong = sorted(wrong, key=lambda w: -w[0])[:count]
    cols = 4
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 3, rows * 3.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (conf, image_path, r) in zip(axes.flat, wrong):
        ax.imshow(image(image_path))
        ax.set_title(f"true: {r['true_class']}\npred: {r['predicted_class']} ({conf:.2f})", fontsize=8)
    if not wrong:
        axes[0, 0].text(0.5, 0.5, "no mistakes on the test split", ha="center", va="center")
    fig.suptitle(title)
    _save(fig, path)


def embedding(features, labels, classes, method, points, seed, title, path):
    """2-D t-SNE (or PCA) map of test features, coloured by class, class names at their centres."""
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(features), size=min(points, len(features)), replace=False))
    x, y = features[keep].astype(np.float32), labels[keep]
    if method == "tsne" and len(x) > 5:
        from sklearn.manifold import TSNE

        xy = TSNE(n_components=2, perplexity=min(30.0, len(x) - 1), init="pca", random_state=seed).fit_transform(x)
    else:
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=seed).fit_transform(x)
    fig, ax = plt.subplots(figsize=(11, 10))
    ax.scatter(xy[:, 0], xy[:, 1], c=y, cmap="nipy_spectral", s=8, alpha=0.8, vmin=0, vmax=max(1, len(classes) - 1))
    for c in np.unique(y):
        cx, cy = np.median(xy[y == c], axis=0)
        ax.annotate(classes[c], (cx, cy), fontsize=6, ha="center", alpha=0.9)
    ax.set(title=title, xticks=[], yticks=[])
    _save(fig, path)


def read_predictions(runs, modes):
    """{mode: rows of its predictions.csv}. test.json is in Git, predictions.csv only in DVC's cache: a clone may have
    one without the other."""
    for m in modes:
        if not (runs[m] / "predictions.csv").exists():
            raise UserError(f"{runs[m] / 'predictions.csv'} not found: dvc pull it, or run dvc repro")
    return {m: read_csv(runs[m] / "predictions.csv") for m in modes}


def confusion(predictions, index):
    """The confusion matrix [true, predicted] of prediction rows, classes numbered by `index`."""
    actual = [index[r["true_class"]] for r in predictions]
    predicted = [index[r["predicted_class"]] for r in predictions]
    return confusion_matrix(actual, predicted, labels=range(len(index)))


def make_all(runs, split_dir, cache_dir, out_dir, params):
    """Every figure of the runs `runs` names ({mode: its metrics folder}), from whichever modes have metrics; returns
    the list of PNG paths written. Per-image files are joined by image path, never by row position."""
    runs, out_dir = {m: Path(folder) for m, folder in runs.items()}, Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = read_classes(split_dir)
    index = {name: i for i, name in enumerate(classes)}
    modes = [m for m in MODES if (runs[m] / "test.json").exists()]
    results = {m: read_json(runs[m] / "test.json") for m in modes}
    predictions = read_predictions(runs, modes)
    matrices = {m: confusion(predictions[m], index) for m in modes}
    written = []

    def out(name):
        written.append(out_dir / name)
        return written[-1]

    curves(
        {m: read_csv(runs[m] / "history.tsv", "\t") for m in MODES if (runs[m] / "history.tsv").exists()},
        out("curves.png"),
    )
    comparison(results, out("comparison.png"))
    for m in modes:
        confusion_heatmap(matrices[m], classes, f"{m}: normalised test confusion matrix", out(f"confusion_{m}.png"))
    recalls = {m: np.diag(matrices[m]) / np.maximum(1, matrices[m].sum(1)) for m in modes}
    per_class_accuracy(recalls, classes, out("per_class_accuracy.png"))
    best = max(modes, key=lambda m: results[m]["mean_per_class_accuracy"])
    pixels, rows, images = open_split(cache_dir, split_dir, "test")
    row_of = {path: image for (path, _, _), image in zip(rows, images)}
    mistakes(
        predictions[best],
        lambda path: pixels[row_of[path]],
        params["mistakes"],
        f"{best}: most confident test mistakes",
        out("mistakes.png"),
    )
    features = np.load(runs[best] / "features.npy")  # in predictions.csv's order, written with it
    labels = np.array([index[r["true_class"]] for r in predictions[best]])
    embedding(
        features,
        labels,
        classes,
        params["embedding"],
        params["embedding_points"],
        0,
        f"{best}: {params['embedding'].upper()} map of test features",
        out("embedding.png"),
    )
    return written
