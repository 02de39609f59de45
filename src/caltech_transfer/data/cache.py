"""The decoded-image cache: each image of the manifests decoded once (by the `split` stage), fitted to a
`cache.image_size` square in the way `cache.fit` names, and stored as uint8 HWC pixels in one .npy file per split,
with meta.json naming the fit and the manifests it holds. Training and evaluation memory-map those files instead of
decoding JPEGs every epoch."""

import hashlib
import json
from pathlib import Path

import numpy as np

from ..core.errors import UserError
from ..core.files import atomic_path, read_json, write_json
from .images import fit_square, load_rgb
from .parallel import parallel_map
from .split import SPLITS, read_manifest


def _decode(job):
    path, size, fit = job
    return np.asarray(fit_square(load_rgb(path), size, fit), dtype=np.uint8)


def manifest_digest(rows):
    """Identifies a manifest's images and labels in order: a reseeded split of the same size differs."""
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def build_cache(raw_dir, split_dir, cache_dir, image_size, fit, workers=2):
    """Write cache_dir/<split>.npy (N, S, S, 3) uint8, in manifest order, for every split, and meta.json
    with the fit and the digest of each manifest, which every reader checks. Every manifest is checked before
    anything is written."""
    cache_dir = Path(cache_dir)
    manifests = {split: read_manifest(Path(split_dir) / f"{split}.csv") for split in SPLITS}
    images = {split: image_paths(raw_dir, rows, Path(split_dir) / f"{split}.csv") for split, rows in manifests.items()}
    cache_dir.mkdir(parents=True, exist_ok=True)
    for split, rows in manifests.items():
        with atomic_path(cache_dir / f"{split}.npy") as partial:
            array = np.lib.format.open_memmap(
                partial, mode="w+", dtype=np.uint8, shape=(len(rows), image_size, image_size, 3)
            )
            jobs = [(path, image_size, fit) for path in images[split]]
            for i, pixels in enumerate(parallel_map(_decode, jobs, workers, desc=f"cache {split}")):
                array[i] = pixels
            array.flush()
            del array
    digests = {split: manifest_digest(rows) for split, rows in manifests.items()}
    write_json(cache_dir / "meta.json", {"image_size": image_size, "fit": fit, "manifests": digests})


def image_paths(raw_dir, rows, manifest):
    """The files a manifest's rows name, each checked to be an existing file inside raw_dir: a hand-edited or
    hostile manifest must not pull any other file of the machine into the cache (and so into DVC's cache and
    remotes)."""
    raw = Path(raw_dir).resolve()
    paths = []
    for line, (name, _, _) in enumerate(rows, 2):  # line 1 is the header
        path = (raw / name).resolve()  # links followed too: one inside data/raw may point anywhere
        if not path.is_relative_to(raw):
            raise UserError(
                f"{manifest} line {line}: {name} is outside {raw_dir}; the manifests are the split stage's: "
                "rerun it (dvc repro -f split)"
            )
        if not path.is_file():
            raise UserError(
                f"{manifest} line {line}: {name} is not in {raw_dir} any more: rerun the split stage "
                "(dvc repro -f split)"
            )
        paths.append(path)
    return paths


def cache_fit(cache_dir):
    """How the cache fitted images to squares."""
    return read_json(Path(cache_dir) / "meta.json")["fit"]


def open_cache(cache_dir, split_dir, split):
    """(memory-mapped pixels, manifest rows) of one split, after checking that the cache holds exactly the
    images the manifest lists, in its order, at the size meta.json gives, and that the file is whole."""
    file, meta_file = Path(cache_dir) / f"{split}.npy", Path(cache_dir) / "meta.json"
    if not file.exists() or not meta_file.exists():
        raise UserError(f"{file} not found: run the data stages first (dvc repro split)")
    rows, meta = read_manifest(Path(split_dir) / f"{split}.csv"), read_json(meta_file)
    if meta.get("manifests", {}).get(split) != manifest_digest(rows):
        raise UserError(
            f"{file} holds other images than {Path(split_dir) / split}.csv (the split changed "
            "since the cache was built): rerun the split stage (dvc repro split)"
        )
    size = meta["image_size"]
    try:  # np.load reads the header and refuses a file shorter than the header says
        pixels = np.load(file, mmap_mode="r")
    except (ValueError, OSError) as err:
        raise UserError(f"{file} is damaged ({err}): rebuild it (dvc repro -f split)") from None
    if pixels.shape != (len(rows), size, size, 3) or pixels.dtype != np.uint8:
        raise UserError(
            f"{file} holds {pixels.dtype} pixels of shape {pixels.shape}, not the {len(rows)} images of "
            f"{size} x {size} x 3 uint8 that meta.json names: rebuild it (dvc repro -f split)"
        )
    return pixels, rows
