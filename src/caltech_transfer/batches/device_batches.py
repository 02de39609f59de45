"""Batches made on the device: the uint8 image cache held in device memory (a few GB for Caltech-101 at 256 px), and
random resized crop, flip and resize done batched there, each sample with its own random crop, so a GPU is not
left waiting for loader processes. Device-agnostic: on the CPU it runs the same code on CPU tensors."""

import math

import numpy as np
import torch
from torchvision.ops import roi_align

from .datasets import last_batch_of_one

LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))  # RandomResizedCrop's aspect-ratio range
TRIES = 10  # as RandomResizedCrop: ten draws, then the whole image


def fits_on_device(nbytes, device):
    """True where the cache can live in device memory with room to spare for training."""
    if device == "cpu":
        return True
    free, _ = torch.cuda.mem_get_info()
    return nbytes < free / 3


def to_device(tensor, device):
    """A small host tensor (indices, boxes, flips) on `device` without the host waiting: a copy from pageable memory
    first waits for all the GPU's queued work, once per copy (CUDA's sync debug mode counts them)."""
    if torch.device(device).type != "cuda":
        return tensor.to(device)
    return tensor.pin_memory().to(device, non_blocking=True)


def crop_boxes(count, height, width, scale_min, generator):
    """(count, 4) boxes x1, y1, x2, y2 in pixels, drawn like torchvision's RandomResizedCrop: an area fraction in
    [scale_min, 1] and an aspect ratio in [3/4, 4/3]; where ten draws do not fit, the whole image."""
    area = height * width * torch.empty(count, TRIES).uniform_(scale_min, 1.0, generator=generator)
    ratio = torch.exp(torch.empty(count, TRIES).uniform_(*LOG_RATIO, generator=generator))
    w, h = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
    fits = (w <= width) & (h <= height)
    first = fits.float().argmax(1)  # the first draw that fits
    w = torch.where(fits.any(1), w[torch.arange(count), first], torch.tensor(float(width)))
    h = torch.where(fits.any(1), h[torch.arange(count), first], torch.tensor(float(height)))
    x = torch.rand(count, generator=generator) * (width - w)
    y = torch.rand(count, generator=generator) * (height - h)
    return torch.stack([x, y, x + w, y + h], 1)


def centre_boxes(count, height, width, crop_fraction):
    """The evaluation crop (resize, then centre crop of crop_fraction of the side) as boxes."""
    w, h = width * crop_fraction, height * crop_fraction
    box = torch.tensor([(width - w) / 2, (height - h) / 2, (width + w) / 2, (height + h) / 2])
    return box.expand(count, 4)


def regions(boxes, batch_size):
    """roi_align's rows (index of the image within its batch, x1, y1, x2, y2) for boxes in batch order."""
    within_batch = torch.arange(len(boxes)) % batch_size
    return torch.cat([within_batch.float()[:, None], boxes], 1)


def cut(images, rois, size):
    """Each image's region resized to size x size (area-averaged where it shrinks), as float 0-255 NCHW."""
    return roi_align(images.float(), rois, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)


class DeviceBatches:
    """An iterable of (images, labels) batches like a DataLoader's, cut from device-resident pixels.
    Training: shuffled, a random resized crop and a random flip per sample. Evaluation: the centre crop."""

    def __init__(
        self,
        images,
        batch_size,
        device,
        size,
        train,
        sampler=None,
        scale_min=0.25,
        hflip=True,
        crop_fraction=0.875,
        generator=None,
    ):
        pixels = np.load(images.file, mmap_mode="r")[images.rows]  # the dataset's images (all, or a subset)
        self.pixels = torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2)  # NCHW uint8, in memory
        self.labels = images.labels.to(device)
        self.batch_size, self.size, self.train = batch_size, size, train
        self.scale_min, self.hflip, self.crop_fraction = scale_min, hflip, crop_fraction
        self.generator = generator or torch.Generator()
        # which images, in which order: all of them in turn, unless a (shuffling, sharding) sampler is given
        self.sampler = sampler if sampler is not None else range(len(self.labels))

    def __len__(self):
        return math.ceil(self.images_per_epoch() / self.batch_size)

    def images_per_epoch(self):
        """All the sampler's, less a last one alone in its batch in training (`datasets.last_batch_of_one`)."""
        return len(self.sampler) - (self.train and last_batch_of_one(len(self.sampler), self.batch_size))

    def __iter__(self):
        """The epoch's order, crops and flips are drawn on the host and copied in one go, so that a step only slices
        them: per step the host launches a handful of kernels and neither draws nor copies anything."""
        height, width = self.pixels.shape[2:]
        order = torch.tensor(list(self.sampler)[: self.images_per_epoch()], dtype=torch.long)
        n, device = len(order), self.pixels.device
        if self.train:
            boxes = crop_boxes(n, height, width, self.scale_min, self.generator)
        else:
            boxes = centre_boxes(n, height, width, self.crop_fraction)
        flips = to_device(torch.rand(n, generator=self.generator) < 0.5, device) if self.train and self.hflip else None
        order, rois = to_device(order, device), to_device(regions(boxes, self.batch_size), device)
        for start in range(0, n, self.batch_size):
            step = slice(start, start + self.batch_size)
            index = order[step]
            batch = cut(self.pixels[index], rois[step], self.size)
            if flips is not None:
                batch = torch.where(flips[step, None, None, None], batch.flip(3), batch)
            yield batch, self.labels[index]
