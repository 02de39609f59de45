"""The `cache` stage (`python -m caltech_transfer.data.cache`): every image of the data set decoded once, fitted to a
`cache.image_size` square in the way `cache.fit` names, and stored as uint8 HWC pixels in one .npy file, row i the
image index.csv names on its line i; meta.json names the fit. A split is a list of rows of it (the manifests' `image`
column), so any number of split seeds costs no more decoding or disk than one. Training and evaluation memory-map the
file instead of decoding JPEGs every epoch."""

import os
from pathlib import Path

import numpy as np

from ..core.cli import cli
from ..core.errors import UserError
from ..core.files import all_or_none, atomic_path, read_csv, read_json, write_csv, write_json
from ..core.layout import CACHE, RAW
from ..core.params import load_params
from .images import fit_square, load_rgb
from .parallel import parallel_map
from .scan import scan

INDEX, PIXELS, META, SKIPPED = "index.csv", "pixels.npy", "meta.json", "skipped.csv"


def _decode(job):
    path, size, fit = job
    return np.asarray(fit_square(load_rgb(path), size, fit), dtype=np.uint8)


def build_cache(raw_dir, cache_dir, image_size, fit, workers=2):
    """Scan raw_dir (BACKGROUND_Google included: whether it is a class is the split's choice) and write
    cache_dir/pixels.npy (N, S, S, 3) uint8, index.csv (path, class_name) in the same order, skipped.csv (the files
    that are not images, with why) and meta.json."""
    cache_dir = Path(cache_dir)
    images, skipped = scan(raw_dir, include_background=True, workers=workers)
    rows = [(path, name) for name in sorted(images) for path in images[name]]
    with atomic_path(cache_dir / PIXELS) as partial:
        array = np.lib.format.open_memmap(
            partial, mode="w+", dtype=np.uint8, shape=(len(rows), image_size, image_size, 3)
        )
        jobs = [(Path(raw_dir) / path, image_size, fit) for path, _ in rows]
        for i, pixels in enumerate(parallel_map(_decode, jobs, workers, desc="decode images")):
            array[i] = pixels
        array.flush()
        del array
    with all_or_none([cache_dir / name for name in (INDEX, SKIPPED, META)]) as (index, skipped_file, meta):
        write_csv(index, ["path", "class_name"], rows)
        write_csv(skipped_file, ["path", "reason"], skipped)
        write_json(meta, {"image_size": image_size, "fit": fit, "images": len(rows)})
    print(
        f"cache: {len(rows)} images of {len(images)} folders decoded to {image_size} px ({fit}); "
        f"{len(skipped)} files skipped (listed in {cache_dir / SKIPPED})"
    )
    for path, reason in skipped:
        print(f"  skipped {path}: {reason}")


def read_index(cache_dir):
    """[(relative path, class folder)] of every cached image, in the pixels' order."""
    file = Path(cache_dir) / INDEX
    if not file.exists():
        raise UserError(f"{file} not found: run the cache stage first (dvc repro cache)")
    return [(r["path"], r["class_name"]) for r in read_csv(file)]


def cache_fit(cache_dir):
    """How the cache fitted images to squares."""
    return read_json(Path(cache_dir) / META)["fit"]


def open_pixels(cache_dir):
    """The memory-mapped pixels of every cached image, after checking that the file is whole and holds as many
    images, of the size, as index.csv and meta.json say."""
    file, meta_file = Path(cache_dir) / PIXELS, Path(cache_dir) / META
    if not file.exists() or not meta_file.exists():
        raise UserError(f"{file} not found: run the data stages first (dvc repro cache)")
    size, count = read_json(meta_file)["image_size"], len(read_index(cache_dir))
    try:  # np.load reads the header and refuses a file shorter than the header says
        pixels = np.load(file, mmap_mode="r")
    except (ValueError, OSError) as err:
        raise UserError(f"{file} is damaged ({err}): rebuild it (dvc repro -f cache)") from None
    if pixels.shape != (count, size, size, 3) or pixels.dtype != np.uint8:
        raise UserError(
            f"{file} holds {pixels.dtype} pixels of shape {pixels.shape}, not the {count} images of "
            f"{size} x {size} x 3 uint8 that meta.json and index.csv name: rebuild it (dvc repro -f cache)"
        )
    return pixels


@cli
def main():
    p = load_params("cache")["cache"]
    build_cache(RAW, CACHE, p["image_size"], p["fit"], workers=os.cpu_count())


if __name__ == "__main__":
    main()
