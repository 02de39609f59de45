"""Batches over the image cache: evaluation crops sliced for a whole batch equal the per-image transform's."""

import pytest
import torch

from caltech_transfer.batches.datasets import CachedImages, CentreCrops, eval_batches, eval_transform, make_loader
from caltech_transfer.train.distributed import ShardedSampler


@pytest.mark.parametrize("crop", [40, 32, 31])  # the whole cached square, an even and an odd margin
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_sliced_centre_crops_equal_the_transform(small_dataset, crop, interpolation):
    prep = {"input_size": crop, "resize_size": 40, "interpolation": interpolation}  # the small cache is 40 px
    images = CachedImages(small_dataset / "cache", small_dataset / "split", "val", eval_transform(prep), per_class=3)
    for sampler in (None, ShardedSampler(len(images), rank=1, size=2)):
        sliced = eval_batches(images, prep, 4, sampler=sampler)
        assert isinstance(sliced, CentreCrops)
        transformed = list(make_loader(images, 4, sampler=sampler))
        assert len(sliced) == len(transformed)
        for (a, labels_a), (b, labels_b) in zip(sliced, transformed, strict=True):
            assert a.dtype == b.dtype == torch.uint8 and a.is_contiguous()
            assert torch.equal(a, b) and torch.equal(labels_a, labels_b)


def test_a_resize_to_another_size_goes_through_the_transform(small_dataset):
    prep = {"input_size": 24, "resize_size": 28, "interpolation": "bilinear"}
    images = CachedImages(small_dataset / "cache", small_dataset / "split", "test", eval_transform(prep))
    batches = eval_batches(images, prep, 8)
    assert not isinstance(batches, CentreCrops)
    assert next(iter(batches))[0].shape == (8, 3, 24, 24)
