"""`caltech-predict CHECKPOINT IMAGE_OR_FOLDER...`: top-5 classes with probabilities for each image."""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from .checkpoints import load_classifier
from .data import FIT_BEFORE_CHOICE, eval_transform, fit_square, load_rgb
from .errors import UserError, cli
from .files import write_csv


def image_files(inputs):
    for item in map(Path, inputs):
        if item.is_dir():
            yield from sorted(p for p in item.rglob("*") if p.is_file())
        elif item.exists():
            yield item
        else:
            raise UserError(f"{item} does not exist")


def predict(checkpoint, inputs, top=5):
    """[(path, [(class, probability)] or None, error or None)] for every file under inputs."""
    model, ckpt = load_classifier(checkpoint)
    prep = ckpt["preprocessing"]
    transform = eval_transform(prep)
    results = []
    for path in image_files(inputs):
        try:
            img = fit_square(load_rgb(path), prep["resize_size"], prep.get("fit", FIT_BEFORE_CHOICE))
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
    parser.add_argument("checkpoint", help="a trained models/<mode>.pt")
    parser.add_argument("images", nargs="+", help="image files or folders")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--csv", help="also write the predictions to this CSV file")
    args = parser.parse_args(argv)
    if args.top < 1:
        raise UserError(f"--top {args.top}: give 1 or more classes to show")
    results = predict(args.checkpoint, args.images, args.top)
    for path, top, error in results:
        if error:
            print(f"{path}: skipped, {error}", file=sys.stderr)
        else:
            print(f"{path}: " + ", ".join(f"{name} {p:.3f}" for name, p in top))
    if args.csv:
        write_csv(args.csv, ["path", "rank", "class_name", "probability"],
                  [[str(path), rank + 1, name, f"{p:.4f}"]
                   for path, top, _ in results if top for rank, (name, p) in enumerate(top)])
    if not any(top for _, top, _ in results):
        raise UserError("no image could be read")


if __name__ == "__main__":
    main()
