"""What the class folders hold: the images that decode, and every other file with why it is skipped."""

import os
import unicodedata
from pathlib import Path

from PIL import Image

from ..core.errors import UserError
from .parallel import parallel_map

BACKGROUND = "BACKGROUND_Google"
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
