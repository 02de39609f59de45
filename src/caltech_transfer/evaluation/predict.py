"""`caltech-predict CHECKPOINT IMAGE_OR_FOLDER...`: top-5 classes with probabilities for each image."""

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

from ..batches.datasets import eval_transform
from ..core.cli import cli
from ..core.errors import UserError
from ..core.files import write_csv
from ..data.images import fit_square, load_rgb
from ..model.checkpoints import load_classifier


def image_files(inputs):
    """(path, None) for every regular file under inputs, (path, why it is skipped) for everything else found there:
    a folder's dangling links, links to folders (not followed) and special files are named, never dropped."""
    for item in map(Path, inputs):
        if item.is_dir():
            for path in sorted(item.rglob("*")):
                if not path.is_dir() or path.is_symlink():
                    yield path, skip_reason(path)
        elif item.exists():
            yield item, skip_reason(item)
        else:
            raise UserError(f"{item} does not exist" + (" (a dangling symbolic link)" if item.is_symlink() else ""))


def skip_reason(path):
    if path.is_file():
        return None
    if path.is_symlink():
        return "a link to a folder, not followed" if path.is_dir() else "a dangling symbolic link"
    return "not a regular file (a pipe, socket or device)"


def writable_file(path):
    """Refuse, before any work, an output path that cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--csv {path} is a folder: give a file name, e.g. {path / 'predictions.csv'}")
    existing = next(folder for folder in path.parents if folder.exists())  # missing folders are created
    if not existing.is_dir():
        raise UserError(f"--csv {path}: {existing} is a file, not a folder; choose another path")
    if not os.access(path if path.exists() else existing, os.W_OK):
        raise UserError(f"--csv {path} cannot be written (no permission): choose another path")


def predict(checkpoint, inputs, top=5):
    """[(path, [(class, probability)] or None, error or None)] for every file under inputs."""
    model, ckpt = load_classifier(checkpoint)
    prep = ckpt["preprocessing"]
    transform = eval_transform(prep)
    results = []
    for path, skipped in image_files(inputs):
        if skipped:
            results.append((path, None, skipped))
            continue
        try:
            img = fit_square(load_rgb(path), prep["resize_size"], prep["fit"])
        except Exception as err:  # PIL raises several kinds for non-images and broken files
            results.append((path, None, f"not a readable image ({type(err).__name__})"))
            continue
        pixels = transform(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1))
        with torch.inference_mode():
            probs = model(pixels[None]).softmax(1)[0]
        values, indices = probs.topk(min(top, len(ckpt["classes"])))
        results.append((path, [(ckpt["classes"][i], v) for v, i in zip(values.tolist(), indices.tolist())], None))
    return results


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip())
    parser.add_argument(
        "checkpoint", help="a trained model: models/seeds/<seed>/{finetune,feature_extract}.pt or models/scratch.pt"
    )
    parser.add_argument("images", nargs="+", help="image files or folders")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--csv", help="also write the predictions to this CSV file")
    args = parser.parse_args(argv)
    if args.top < 1:
        raise UserError(f"--top {args.top}: give 1 or more classes to show")
    if args.csv:
        writable_file(args.csv)
    results = predict(args.checkpoint, args.images, args.top)
    for path, top, error in results:
        if error:
            print(f"{path}: skipped, {error}", file=sys.stderr)
        else:
            print(f"{path}: " + ", ".join(f"{name} {p:.3f}" for name, p in top))
    if args.csv:
        write_csv(
            args.csv,
            ["path", "rank", "class_name", "probability"],
            [
                [str(path), rank + 1, name, f"{p:.4f}"]
                for path, top, _ in results
                if top
                for rank, (name, p) in enumerate(top)
            ],
        )
    if not any(top for _, top, _ in results):
        raise UserError("no image could be read")


if __name__ == "__main__":
    main()
