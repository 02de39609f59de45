"""The data module: the decoded-image cache, datasets over it, transforms and loaders.

Each image is decoded once (by the `cache` stage), fitted to a `cache.image_size` square in the way
`cache.fit` names (`fit_square`), and stored as uint8 HWC pixels in one .npy file per split. Training and
evaluation memory-map those files instead of decoding JPEGs every epoch."""
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

from .errors import UserError
from .files import atomic_path, read_json, write_json
from .split import SPLITS, parallel_map, read_manifest


HIGH_DEPTH = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535, "F": 1.0}  # full scale


def load_rgb(path):
    """Decode any image as the RGB picture a viewer shows: EXIF orientation applied, transparent pixels over
    white, 16-bit and float pixels scaled to 8 bits (a plain convert clips them to white)."""
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode in HIGH_DEPTH:
            pixels = np.asarray(img, dtype=np.float64) * (255.0 / HIGH_DEPTH[img.mode])
            img = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")
        if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
        return img.convert("RGB")


PAD_COLOUR = (124, 116, 104)  # the ImageNet mean, which normalisation maps to about zero


def centre_crop(img, size):
    """Shorter side to `size`, then the centre square: the image's long sides are lost."""
    scale = size / min(img.size)
    w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
    img = img.resize((w, h), Image.BICUBIC)
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def pad(img, size):
    """Longer side to `size`, centred on PAD_COLOUR: the whole image, and its shape (Caltech's `Faces` are
    landscape photos, its `Faces_easy` portrait crops of the same photos)."""
    scale = size / max(img.size)
    w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
    square = Image.new("RGB", (size, size), PAD_COLOUR)
    square.paste(img.resize((w, h), Image.BICUBIC), ((size - w) // 2, (size - h) // 2))
    return square


def squash(img, size):
    """Both sides to `size`: the whole image, stretched."""
    return img.resize((size, size), Image.BICUBIC)


FITS = {"crop": centre_crop, "pad": pad, "squash": squash}  # the choices of `cache.fit`
FIT_BEFORE_CHOICE = "crop"  # how caches and checkpoints made before `cache.fit` existed fitted their images


def fit_square(img, size, fit):
    """The image as a size x size square, fitted as FITS[fit] does (bicubic, antialiased)."""
    img.draft("RGB", (size, size))  # lets JPEG decode at a reduced scale when the image is much larger
    return FITS[fit](img, size)


def _decode(job):
    path, size, fit = job
    return np.asarray(fit_square(load_rgb(path), size, fit), dtype=np.uint8)


def manifest_digest(rows):
    """Identifies a manifest's images and labels in order: a reseeded split of the same size differs."""
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def build_cache(raw_dir, split_dir, cache_dir, image_size, fit, workers=2):
    """Write cache_dir/<split>.npy (N, S, S, 3) uint8, in manifest order, for every split, and meta.json
    with the fit and the digest of each manifest, which every reader checks."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    digests = {}
    for split in SPLITS:
        rows = read_manifest(Path(split_dir) / f"{split}.csv")
        with atomic_path(cache_dir / f"{split}.npy") as partial:
            array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8,
                                              shape=(len(rows), image_size, image_size, 3))
            jobs = [(Path(raw_dir) / path, image_size, fit) for path, _, _ in rows]
            for i, pixels in enumerate(parallel_map(_decode, jobs, workers, desc=f"cache {split}")):
                array[i] = pixels
            array.flush()
            del array
        digests[split] = manifest_digest(rows)
    write_json(cache_dir / "meta.json", {"image_size": image_size, "fit": fit, "manifests": digests})


def cache_fit(cache_dir):
    """How the cache fitted images to squares."""
    return read_json(Path(cache_dir) / "meta.json").get("fit", FIT_BEFORE_CHOICE)


def open_cache(cache_dir, split_dir, split):
    """(memory-mapped pixels, manifest rows) of one split, after checking that the cache holds exactly the
    images the manifest lists, in its order."""
    file, meta = Path(cache_dir) / f"{split}.npy", Path(cache_dir) / "meta.json"
    if not file.exists() or not meta.exists():
        raise UserError(f"{file} not found: run the data stages first (dvc repro cache)")
    rows = read_manifest(Path(split_dir) / f"{split}.csv")
    if read_json(meta).get("manifests", {}).get(split) != manifest_digest(rows):
        raise UserError(f"{file} holds other images than {Path(split_dir) / split}.csv (the split changed "
                        "since the cache was built): rerun the cache stage (dvc repro cache)")
    return np.load(file, mmap_mode="r"), rows


def nested_subset(rows, per_class):
    """Indices of `per_class` rows of each class, the first ones of a fixed shuffle of that class's rows, so the
    subset for k images per class lies inside the one for any larger k (the points of a learning curve)."""
    by_class = {}
    for i, (path, name, _) in enumerate(rows):
        by_class.setdefault(name, []).append(i)
    chosen = []
    for name, indices in by_class.items():
        random.Random(name).shuffle(indices)  # seeded by the class name: the same subsets for every run
        chosen.extend(indices[:per_class])
    return sorted(chosen)


class CachedImages(Dataset):
    """Images of one split from the cache, as uint8 CHW tensors, with their class indices; with `per_class`,
    only that many images of each class (`nested_subset`)."""

    def __init__(self, cache_dir, split_dir, split, transform=None, per_class=None):
        self.file, self.split = Path(cache_dir) / f"{split}.npy", split
        pixels, rows = open_cache(cache_dir, split_dir, split)
        self.image_bytes = pixels[0].nbytes
        self.rows = list(range(len(rows))) if per_class is None else nested_subset(rows, per_class)
        self.paths = [rows[i][0] for i in self.rows]
        self.labels = torch.tensor([rows[i][2] for i in self.rows], dtype=torch.long)
        self.transform = transform
        self._pixels = None  # opened lazily so each loader worker maps the file itself

    def __len__(self):
        return len(self.paths)

    @property
    def nbytes(self):
        return self.image_bytes * len(self.rows)

    def image(self, i):
        if self._pixels is None:
            self._pixels = np.load(self.file, mmap_mode="r")
        return torch.from_numpy(np.array(self._pixels[self.rows[i]])).permute(2, 0, 1)

    def __getitem__(self, i):
        img = self.image(i)
        if self.transform is not None:
            img = self.transform(img)
        return img, self.labels[i]


def eval_transform(prep):
    """Resize to input_size / crop_pct and centre-crop input_size, as the weights were evaluated."""
    interpolation = InterpolationMode(prep["interpolation"])
    return v2.Compose([v2.Resize(prep["resize_size"], interpolation=interpolation, antialias=True),
                       v2.CenterCrop(prep["input_size"])])


def train_transform(prep, augment, crop_scale_min):
    """Random resized crop (of crop_scale_min to all of the image's area, the mode's own) and flip, plus colour
    jitter and rotation when asked for: training data only."""
    interpolation = InterpolationMode(prep["interpolation"])
    steps = [v2.RandomResizedCrop(prep["input_size"], scale=(crop_scale_min, 1.0),
                                  interpolation=interpolation, antialias=True)]
    if augment["hflip"]:
        steps.append(v2.RandomHorizontalFlip())
    if augment["color_jitter"] > 0:
        j = augment["color_jitter"]
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j))
    if augment["rotation"] > 0:
        steps.append(v2.RandomRotation(augment["rotation"], interpolation=interpolation))
    return v2.Compose(steps)


def make_loader(dataset, batch_size, workers=0, sampler=None):
    """Worker processes persist across epochs: starting them anew each epoch costs seconds."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      persistent_workers=workers > 0, pin_memory=torch.cuda.is_available())
