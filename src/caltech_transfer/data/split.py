"""The `split` stage: scan the class folders, skip what cannot be decoded, and write train/val/test manifests."""

import os
import random
import unicodedata
from pathlib import Path

from PIL import Image

from ..core.errors import UserError
from ..core.files import all_or_none, read_csv, write_csv, write_json
from .parallel import parallel_map

BACKGROUND = "BACKGROUND_Google"
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".webp"}


def check_image(path):
    """None when the file is an image that decodes, else the reason it is skipped.
    A file without an image suffix is skipped whatever its content (the real archive's
    BACKGROUND_Google/tmp is a stray JPEG copy, not one of the dataset's images)."""
    if Path(path).suffix.lower() not in IMAGE_SUFFIXES:
        return "not an image file (no image suffix)"
    try:
        with Image.open(path) as img:
            img.load()
        return None
    except Image.UnidentifiedImageError:
        return "not an image (unrecognised content)"
    except Exception as err:  # truncated or corrupt files raise a variety of errors
        return f"cannot decode: {err}".splitlines()[0]


def check_name(path):
    """Refuse a class or file name that the manifests (CSV, one class a line) and the results cannot carry: bytes
    that are not UTF-8, or a line break, tab or other control character."""
    name = path.name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        why = "is not valid UTF-8"
    else:
        odd = [c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")]
        why = f"holds {unicodedata.name(odd[0], repr(odd[0]))}" if odd else None
    if why:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise UserError(f"the name of {shown!r} {why}: rename it (letters, digits, spaces, - and _ are safe)")


def scan(root, include_background=False, workers=2):
    """Return ({class: [relative paths of good images]}, [(relative path, reason) skipped])."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} does not exist: run the download stage first (dvc repro download)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and (include_background or p.name != BACKGROUND))
    files = [f for c in classes for f in sorted((root / c).iterdir()) if f.is_file()]
    for path in [root / c for c in classes] + files:
        check_name(path)
    reasons = list(parallel_map(check_image, files, workers, desc="check images"))
    good = {c: [] for c in classes}
    skipped = []
    for path, reason in zip(files, reasons):
        rel = path.relative_to(root).as_posix()
        if reason is None:
            good[path.parent.name].append(rel)
        else:
            skipped.append((rel, reason))
    empty = [c for c, images in good.items() if not images]
    if empty:
        raise UserError(
            f"class folder {root / empty[0]} has no readable image ({len(empty)} such folders): add "
            "images to it or remove it"
        )
    return good, skipped


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


def read_manifest(path):
    """[(relative path, class name, class index)] from a manifest CSV."""
    if not Path(path).exists():
        raise UserError(f"{path} not found: run the split stage first (dvc repro split)")
    return [(r["path"], r["class_name"], int(r["class_index"])) for r in read_csv(path)]


def read_classes(split_dir):
    return Path(split_dir, "classes.txt").read_text().splitlines()


def pool_size(split_dir):
    """Training images of the smallest class: the largest k a point can use."""
    counts = {}
    for _, name, _ in read_manifest(Path(split_dir) / "train.csv"):
        counts[name] = counts.get(name, 0) + 1
    return min(counts.values())


def run(raw_dir, out_dir, params, workers=2):
    """Scan raw_dir, write manifests, classes.txt, skipped.csv and summary.json into out_dir."""
    out_dir = Path(out_dir)
    images, skipped = scan(raw_dir, params["include_background"], workers=workers)
    splits = assign(
        images,
        scheme=params["scheme"],
        seed=params["seed"],
        train_per_class=params["train_per_class"],
        val_per_class=params["val_per_class"],
        test_per_class=params["test_per_class"],
        ratios=params["ratios"],
    )
    summary = {
        "classes": len(images),
        **{split: len(rows) for split, rows in splits.items()},
        "skipped": len(skipped),
        "skipped_files": [path for path, _ in skipped],
    }
    names = [f"{split}.csv" for split in SPLITS] + ["classes.txt", "skipped.csv", "summary.json"]
    with all_or_none([out_dir / name for name in names]) as files:  # never the manifests of two splits at once
        for split, file in zip(SPLITS, files):
            write_csv(file, ["path", "class_name", "class_index"], splits[split])
        files[3].write_text("".join(f"{name}\n" for name in sorted(images)))
        write_csv(files[4], ["path", "reason"], skipped)
        write_json(files[5], summary)
    print(
        f"split: {summary['classes']} classes, {summary['train']} train, {summary['val']} val, "
        f"{summary['test']} test images; {len(skipped)} files skipped (listed in {out_dir / 'skipped.csv'})"
    )
    for path, reason in skipped:
        print(f"  skipped {path}: {reason}")
    return summary
