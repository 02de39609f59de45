"""The `split@<seed>` stages (`python -m caltech_transfer.data.split <seed>`): train/val/test manifests of the
cached images, each image named by its path and its row in the cache."""

import random
import sys
from pathlib import Path

from ..core.cli import cli, stage_arguments
from ..core.errors import UserError
from ..core.files import all_or_none, read_csv, write_csv, write_json
from ..core.layout import CACHE, split_dir
from ..core.params import load_params
from .cache import INDEX, open_pixels, read_index
from .scan import BACKGROUND

SPLITS = ("train", "val", "test")


def assign(
    images, scheme="standard", seed=0, train_per_class=30, val_per_class=5, test_per_class=None, ratios=(0.8, 0.1, 0.1)
):
    """Split each class's images; returns {split: [(path, class_name, class_index)]}.

    standard: `train_per_class` images per class for training, `val_per_class` of them held out for
    validation, the rest (capped at `test_per_class` when set) for testing.
    ratio: a stratified split by the fractions in `ratios`."""
    rng = random.Random(seed)
    splits = {s: [] for s in SPLITS}
    for index, name in enumerate(sorted(images)):
        files = sorted(images[name])
        rng.shuffle(files)
        if scheme == "standard":
            if len(files) <= train_per_class:
                raise UserError(
                    f"class {name} has {len(files)} images, not more than split.train_per_class="
                    f"{train_per_class}; lower it or use split.scheme: ratio"
                )
            if val_per_class >= train_per_class:
                raise UserError("split.val_per_class must be smaller than split.train_per_class")
            n_train, n_val = train_per_class - val_per_class, val_per_class
            n_test = len(files) - train_per_class
            if test_per_class is not None:
                n_test = min(n_test, test_per_class)
        else:
            n_train = round(len(files) * ratios[0])
            n_val = round(len(files) * ratios[1])
            n_test = len(files) - n_train - n_val
            empty = [split for split, n in zip(SPLITS, (n_train, n_val, n_test)) if n == 0]
            if empty:
                raise UserError(
                    f"split.ratios {list(ratios)} give class {name} ({len(files)} images) no {empty[0]} "
                    "image: raise that fraction, or use split.scheme: standard"
                )
        cuts = {
            "train": files[:n_train],
            "val": files[n_train : n_train + n_val],
            "test": files[n_train + n_val : n_train + n_val + n_test],
        }
        for split, chosen in cuts.items():
            splits[split].extend((path, name, index) for path in sorted(chosen))
    return splits


MANIFEST = ("path", "class_name", "class_index")


def read_manifest(path):
    """[(relative path, class name, class index)] from a manifest CSV."""
    return [manifest_row(r) for r in manifest_table(path)]


def manifest_row(r):
    return r["path"], r["class_name"], int(r["class_index"])


def manifest_table(path):
    """A manifest's rows as dicts keyed by its header."""
    if not Path(path).exists():
        raise UserError(f"{path} not found: run the split stage first (dvc repro split)")
    return read_csv(path)


def training_splits(final_fit):
    """The splits a training run learns from: train, or with `train.final_fit` train and val together (the
    literature's final fit on every training image, the recipe having been chosen on validation)."""
    return ("train", "val") if final_fit else ("train",)


def open_split(cache_dir, split_dir, *splits):
    """(memory-mapped pixels of every cached image, the manifest rows of `splits` in order, the pixels' row of
    each), after checking that each row a manifest names holds the image it names."""
    index, rows, images = read_index(cache_dir), [], []
    for split in splits:
        manifest = Path(split_dir) / f"{split}.csv"
        table = manifest_table(manifest)
        found = [manifest_row(r) for r in table]
        chosen = [int(r["image"]) for r in table]
        if any(not 0 <= i < len(index) or index[i][0] != row[0] for i, row in zip(chosen, found)):
            raise UserError(
                f"{manifest} names other images than {Path(cache_dir) / INDEX} (the cache changed since the split "
                "was made): rerun the split stage (dvc repro split)"
            )
        rows += found
        images += chosen
    return open_pixels(cache_dir), rows, images


def read_classes(split_dir):
    return Path(split_dir, "classes.txt").read_text().splitlines()


def pool_size(split_dir, final_fit):
    """Training images of the smallest class: the largest k a point can use."""
    counts = {}
    for split in training_splits(final_fit):
        for _, name, _ in read_manifest(Path(split_dir) / f"{split}.csv"):
            counts[name] = counts.get(name, 0) + 1
    return min(counts.values())


def run(cache_dir, out_dir, params, seed):
    """Split the images the cache holds (its index.csv) with split seed `seed`: write the manifests (each image's
    row in the cache in their `image` column), classes.txt and summary.json into out_dir. No image is decoded."""
    out_dir = Path(out_dir)
    rows = read_index(cache_dir)
    row_of = {path: i for i, (path, _) in enumerate(rows)}
    images = {}
    for path, name in rows:
        if params["include_background"] or name != BACKGROUND:
            images.setdefault(name, []).append(path)
    splits = assign(
        images,
        scheme=params["scheme"],
        seed=seed,
        train_per_class=params["train_per_class"],
        val_per_class=params["val_per_class"],
        test_per_class=params["test_per_class"],
        ratios=params["ratios"],
    )
    summary = {"classes": len(images), **{split: len(rows) for split, rows in splits.items()}}
    names = [f"{split}.csv" for split in SPLITS] + ["classes.txt", "summary.json"]
    with all_or_none([out_dir / name for name in names]) as files:  # never the manifests of two splits at once
        for split, file in zip(SPLITS, files):
            write_csv(file, [*MANIFEST, "image"], [(*row, row_of[row[0]]) for row in splits[split]])
        files[3].write_text("".join(f"{name}\n" for name in sorted(images)))
        write_json(files[4], summary)
    print(
        f"split: {summary['classes']} classes, {summary['train']} train, {summary['val']} val, "
        f"{summary['test']} test images"
    )
    return summary


@cli
def main():
    (seed,) = stage_arguments(sys.argv, int)
    run(CACHE, split_dir(seed), load_params("split")["split"], seed)


if __name__ == "__main__":
    main()
