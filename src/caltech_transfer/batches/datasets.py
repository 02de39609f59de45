"""Datasets over the image cache, their transforms and loaders, and the nested subsets of a learning curve."""

import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import InterpolationMode, v2

from ..core.errors import UserError
from ..data.cache import PIXELS, open_pixels, read_index
from ..data.split import open_split, pool_size


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


def check_shots(per_class, split_dir, final_fit):
    """Refuse a learning-curve point of k images per class that is empty or larger than the training pool."""
    pool = pool_size(split_dir, final_fit)
    if not 1 <= per_class <= pool:
        raise UserError(
            f"curve.shots: {per_class} images per class is not between 1 and {pool}, the training pool's smallest "
            f"class; use values from 1 to {pool}"
        )


class CachedImages(Dataset):
    """Images of one split (or of several together, `splits` a tuple of names) from the cache, as uint8 CHW
    tensors, with their class indices; with `per_class`, only that many images of each class (`nested_subset`).
    `rows` are the images' rows in the cache's pixels."""

    def __init__(self, cache_dir, split_dir, splits, transform=None, per_class=None):
        pixels, rows, images = open_split(cache_dir, split_dir, *((splits,) if isinstance(splits, str) else splits))
        chosen = range(len(rows)) if per_class is None else nested_subset(rows, per_class)
        self._hold(cache_dir, pixels, [images[i] for i in chosen], [rows[i] for i in chosen], transform)

    @classmethod
    def every_image(cls, cache_dir, transform=None):
        """Every image of the cache, in its order (labels: the class folder's place among the cache's folders)."""
        index = read_index(cache_dir)
        folders = {name: i for i, name in enumerate(sorted({name for _, name in index}))}
        images = cls.__new__(cls)
        rows = [(path, name, folders[name]) for path, name in index]
        images._hold(cache_dir, open_pixels(cache_dir), list(range(len(index))), rows, transform)
        return images

    def _hold(self, cache_dir, pixels, images, rows, transform):
        self.file = Path(cache_dir) / PIXELS
        self.image_bytes, self.size = pixels[0].nbytes, pixels.shape[1]  # the cached squares' side
        self.rows = images  # rows of the cache
        self.paths = [row[0] for row in rows]
        self.labels = torch.tensor([row[2] for row in rows], dtype=torch.long)
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

    def __getitem__(self, item):
        """Image `item` transformed; for `(index, seed)`, its random transforms drawn from `seed` alone, with the
        process's own random state left as it was (so that drawing here never moves the training's draws)."""
        i, seed = item if isinstance(item, tuple) else (item, None)
        img = self.image(i)
        if self.transform is not None and seed is None:
            img = self.transform(img)
        elif self.transform is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                img = self.transform(img)
        return img, self.labels[i]


def eval_transform(prep):
    """Resize to input_size / crop_pct and centre-crop input_size, as the weights were evaluated."""
    interpolation = InterpolationMode(prep["interpolation"])
    return v2.Compose(
        [v2.Resize(prep["resize_size"], interpolation=interpolation, antialias=True), v2.CenterCrop(prep["input_size"])]
    )


def train_transform(prep, augment, crop_scale_min, auto_augment="none"):
    """Random resized crop (of crop_scale_min to all of the image's area, the mode's own) and flip, plus colour
    jitter, rotation and TrivialAugment (Mueller & Hutter 2021: one random operation of random strength per
    image) when asked for: training data only."""
    interpolation = InterpolationMode(prep["interpolation"])
    steps = [
        v2.RandomResizedCrop(
            prep["input_size"], scale=(crop_scale_min, 1.0), interpolation=interpolation, antialias=True
        )
    ]
    if augment["hflip"]:
        steps.append(v2.RandomHorizontalFlip())
    if augment["color_jitter"] > 0:
        j = augment["color_jitter"]
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j))
    if augment["rotation"] > 0:
        steps.append(v2.RandomRotation(augment["rotation"], interpolation=interpolation))
    if auto_augment == "trivial":
        # its rotations and shears warp tensors with bilinear at best (bicubic is for resizing only)
        steps.append(v2.TrivialAugmentWide(interpolation=InterpolationMode.BILINEAR))
    return v2.Compose(steps)


def eval_batches(images, prep, batch_size, workers=0, sampler=None):
    """Evaluation batches of `images` (CachedImages made with `eval_transform(prep)`), in order or in the sampler's.
    Where the evaluation's resize keeps the cached size, its centre crop is a slice of the cached pixels, cut for a
    whole batch at once in this process (`CentreCrops`); otherwise each image goes through the transform in a loader.
    Both give the same pixels (tests/test_datasets.py)."""
    if prep["resize_size"] == images.size:
        return CentreCrops(images, prep["input_size"], batch_size, sampler)
    return make_loader(images, batch_size, workers, sampler=sampler)


class CentreCrops:
    """Batches of (uint8 NCHW centre crops, labels) sliced from the memory-mapped cache, as a DataLoader over
    `images` with a resize to the cached size (the identity) and a centre crop would give them, without per-image
    work or loader processes."""

    def __init__(self, images, size, batch_size, sampler=None):
        self.images, self.size, self.batch_size = images, size, batch_size
        self.order = list(sampler) if sampler is not None else list(range(len(images)))
        self.offset = int(round((images.size - size) / 2.0))  # where torchvision's CenterCrop starts

    def __len__(self):
        return -(-len(self.order) // self.batch_size)

    def __iter__(self):
        pixels = np.load(self.images.file, mmap_mode="r")
        window = slice(self.offset, self.offset + self.size)
        for start in range(0, len(self.order), self.batch_size):
            chosen = self.order[start : start + self.batch_size]
            crops = pixels[[self.images.rows[i] for i in chosen], window, window]
            yield torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous(), self.images.labels[chosen]


def make_loader(dataset, batch_size, workers=0, sampler=None, training=False):
    """Worker processes persist across epochs: starting them anew each epoch costs seconds. The loader's own
    generator: otherwise each epoch's iterator takes a draw from the global one, and only without workers (a new
    iterator each epoch), so dropout and mixup would draw otherwise with 0 workers than with 2. In training, a last
    batch of a single image is left out (`last_batch_of_one`)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
        generator=torch.Generator(),
        drop_last=training and last_batch_of_one(len(sampler if sampler is not None else dataset), batch_size),
    )


def last_batch_of_one(count, batch_size):
    """Whether an epoch of `count` images ends in a batch of one, which batch norm cannot train on (one value per
    channel); training leaves that image out of the epoch, and the shuffle puts another one there the next."""
    return count % batch_size == 1 and count > 1
