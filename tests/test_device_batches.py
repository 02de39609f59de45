"""Batches cut and augmented on the device, run here on CPU tensors (the code is device-agnostic)."""

import math

import torch
from torchvision.transforms import v2

from caltech_transfer.batches import device_batches
from caltech_transfer.batches.datasets import CachedImages
from caltech_transfer.batches.device_batches import DeviceBatches, centre_boxes, crop_boxes, cut, regions
from conftest import LEARNS
from test_engine import run


def test_random_crops_stay_inside_the_image_and_follow_the_ranges():
    boxes = crop_boxes(4000, 200, 300, 0.25, torch.Generator().manual_seed(0))
    x1, y1, x2, y2 = boxes.unbind(1)
    assert (x1 >= 0).all() and (y1 >= 0).all() and (x2 <= 300 + 1e-4).all() and (y2 <= 200 + 1e-4).all()
    area = (x2 - x1) * (y2 - y1) / (200 * 300)
    assert area.min() >= 0.25 - 1e-4 and area.max() <= 1 + 1e-4
    ratio = ((x2 - x1) / (y2 - y1)).log()
    whole = (x2 - x1 == 300) & (y2 - y1 == 200)  # the fallback after ten draws that do not fit
    assert (ratio[~whole] >= math.log(3 / 4) - 1e-4).all() and (ratio[~whole] <= math.log(4 / 3) + 1e-4).all()
    assert len({tuple(b.tolist()) for b in boxes}) == len(boxes)  # each sample its own crop


def test_flips_happen_about_half_the_time(halves):
    batches = DeviceBatches(
        halves, 16, "cpu", 24, train=True, scale_min=0.9, generator=torch.Generator().manual_seed(1)
    )
    flipped = seen = 0
    for _ in range(10):
        for images, labels in batches:
            left, right = images[..., :6].mean((1, 2, 3)), images[..., -6:].mean((1, 2, 3))
            flipped += int((left > right).sum())
            seen += len(labels)
    assert seen == 640 and 0.4 < flipped / seen < 0.6


def test_the_evaluation_crop_equals_the_loader_transform(small_dataset):
    images = CachedImages(small_dataset / "cache", small_dataset / "split", "val")
    batches = list(DeviceBatches(images, 5, "cpu", 32, train=False, crop_fraction=32 / 40))
    assert len(images) % 5 and len(batches[-1][1]) == len(images) % 5  # a shorter last batch is cut right too
    expected = torch.stack([v2.CenterCrop(32)(images.image(i)) for i in range(len(images))]).float()
    assert torch.allclose(torch.cat([b for b, _ in batches]), expected, atol=1e-3)
    assert torch.equal(torch.cat([labels for _, labels in batches]), images.labels)


def test_a_box_of_the_whole_image_is_the_image():
    image = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8)
    assert torch.allclose(cut(image, regions(centre_boxes(1, 16, 16, 1.0), 1), 16), image.float(), atol=1e-3)


def test_an_epoch_copies_its_order_crops_and_flips_to_the_device_once_not_per_step(halves, monkeypatch):
    copies = []
    monkeypatch.setattr(device_batches, "to_device", lambda tensor, device: copies.append(len(tensor)) or tensor)
    steps = list(DeviceBatches(halves, 5, "cpu", 24, train=True, generator=torch.Generator().manual_seed(0)))
    assert copies == [64, 64, 64]  # the order, the crop regions and the flips, each for all 64 images at once
    assert [len(images) for images, _ in steps] == [5] * 12 + [4]


def test_a_model_trained_on_device_batches_learns_like_one_on_the_loader(small_dataset, tmp_path):
    settings = {**LEARNS, "runtime.device": "auto"}  # on a GPU where there is one
    loader, _ = run("finetune", small_dataset, tmp_path / "loader", **settings, **{"train.data_path": "loader"})
    device, _ = run("finetune", small_dataset, tmp_path / "device", **settings, **{"train.data_path": "device"})
    assert device["best_val_accuracy"] >= 0.9 and loader["best_val_accuracy"] >= 0.9  # chance is 1/3
