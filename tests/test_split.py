import csv
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from caltech_transfer.batches.datasets import CachedImages
from caltech_transfer.core.errors import UserError
from caltech_transfer.data import split
from caltech_transfer.data.cache import build_cache
from caltech_transfer.data.images import PAD_COLOUR, fit_square

STANDARD = {
    "scheme": "standard",
    "train_per_class": 8,
    "val_per_class": 2,
    "test_per_class": None,
    "ratios": [0.8, 0.1, 0.1],
    "include_background": False,
}


@pytest.fixture(scope="module")
def cached(caltech_tree, tmp_path_factory):
    """The cache of caltech_tree, 32 px squares by crop: what every split of it reads."""
    cache = tmp_path_factory.mktemp("cache")
    build_cache(caltech_tree, cache, image_size=32, fit="crop", workers=1)
    return cache


def run_split(cache, out, seed=0, **overrides):
    return split.run(cache, out, {**STANDARD, **overrides}, seed)


def rows(out, name):
    with open(out / f"{name}.csv") as f:
        return list(csv.DictReader(f))


def test_same_seed_gives_identical_manifests_and_another_seed_differs(cached, tmp_path):
    run_split(cached, tmp_path / "a")
    run_split(cached, tmp_path / "b")
    run_split(cached, tmp_path / "c", seed=1)
    for name in split.SPLITS:
        assert (tmp_path / "a" / f"{name}.csv").read_bytes() == (tmp_path / "b" / f"{name}.csv").read_bytes()
    assert (tmp_path / "a" / "train.csv").read_bytes() != (tmp_path / "c" / "train.csv").read_bytes()


def test_standard_counts_are_exact_and_splits_disjoint(cached, tmp_path):
    summary = run_split(cached, tmp_path)
    # 3 classes of 12 good images, plus a grayscale and a CMYK one; the truncated JPEG is skipped
    assert (tmp_path / "classes.txt").read_text().split() == ["class_00", "class_01", "class_02"]
    per_class = {name: {} for name in split.SPLITS}
    paths = {}
    for name in split.SPLITS:
        listed = rows(tmp_path, name)
        paths[name] = {r["path"] for r in listed}
        assert len(paths[name]) == len(listed)  # sampled without replacement
        for r in listed:
            per_class[name][r["class_name"]] = per_class[name].get(r["class_name"], 0) + 1
            assert r["path"].startswith(r["class_name"] + "/")
            assert int(r["class_index"]) == int(r["class_name"][-2:])
    assert per_class["train"] == {"class_00": 6, "class_01": 6, "class_02": 6}
    assert per_class["val"] == {"class_00": 2, "class_01": 2, "class_02": 2}
    assert per_class["test"] == {"class_00": 5, "class_01": 5, "class_02": 4}
    assert not paths["train"] & paths["val"] and not paths["train"] & paths["test"] and not paths["val"] & paths["test"]
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    assert (summary["train"], summary["val"], summary["test"]) == (18, 6, 14)


def test_test_cap_and_ratio_scheme(cached, tmp_path):
    assert run_split(cached, tmp_path / "cap", test_per_class=3)["test"] == 9
    summary = run_split(cached, tmp_path / "ratio", scheme="ratio", ratios=[0.5, 0.25, 0.25])
    assert (summary["train"], summary["val"], summary["test"]) == (6 + 6 + 6, 3 + 3 + 3, 4 + 4 + 3)


def test_background_excluded_by_default_and_included_on_request(cached, tmp_path):
    run_split(cached, tmp_path / "default")
    assert "BACKGROUND_Google" not in (tmp_path / "default" / "classes.txt").read_text()
    run_split(cached, tmp_path / "bg", include_background=True, train_per_class=3, val_per_class=1)
    assert "BACKGROUND_Google" in (tmp_path / "bg" / "classes.txt").read_text().split()


def test_corrupt_and_non_image_files_are_skipped_and_reported(cached, tmp_path):
    run_split(cached, tmp_path, include_background=True, train_per_class=3, val_per_class=1)
    report = {r["path"]: r["reason"] for r in rows(cached, "skipped")}
    assert set(report) == {"BACKGROUND_Google/tmp", "class_02/image_0903.jpg", "class_01/image_0904.jpg"}
    assert report["BACKGROUND_Google/tmp"] == "not an image file (no image suffix)"
    assert report["class_01/image_0904.jpg"] == "not an image (unrecognised content)"
    assert report["class_02/image_0903.jpg"].startswith("cannot decode")
    listed = {r["path"] for name in split.SPLITS for r in rows(tmp_path, name)}
    assert not listed & set(report)
    assert {"class_00/image_0901.jpg", "class_01/image_0902.jpg"} <= listed  # grayscale and CMYK kept


def test_too_few_images_is_a_clear_error(cached, tmp_path):
    with pytest.raises(UserError, match="lower it"):
        run_split(cached, tmp_path, train_per_class=30)


def test_the_cache_holds_every_image_once_as_rgb_squares_and_a_split_names_its_rows(cached, tmp_path):
    run_split(cached, tmp_path / "split")
    train = CachedImages(cached, tmp_path / "split", "train")
    pixels, index = np.load(cached / "pixels.npy"), rows(cached, "index")
    # 3 classes of 12 good images, a grayscale and a CMYK one, 4 of BACKGROUND_Google, whether a split uses them
    assert pixels.shape == (42, 32, 32, 3) and pixels.dtype == np.uint8 and len(index) == 42
    image, label = train[0]
    assert image.shape == (3, 32, 32) and label.item() == 0
    assert torch.equal(image, torch.from_numpy(pixels[train.rows[0]]).permute(2, 0, 1))
    assert train.paths == [r["path"] for r in rows(tmp_path / "split", "train")]
    assert train.paths == [index[i]["path"] for i in train.rows]
    all_rows = [r["path"] for name in split.SPLITS for r in rows(tmp_path / "split", name)]
    assert "class_00/image_0901.jpg" in all_rows
    split_name = next(
        n for n in split.SPLITS if "class_00/image_0901.jpg" in CachedImages(cached, tmp_path / "split", n).paths
    )
    data = CachedImages(cached, tmp_path / "split", split_name)
    gray, _ = data[data.paths.index("class_00/image_0901.jpg")]
    assert gray.shape[0] == 3 and (gray[0] == gray[1]).all() and (gray[1] == gray[2]).all()


def test_each_fit_makes_a_square_of_the_image_its_own_way():
    stripes = Image.new("RGB", (60, 20))  # landscape, 3:1: red, green and blue thirds
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        stripes.paste(colour, (20 * i, 0, 20 * i + 20, 20))

    def colour_at(img, x, y):
        return tuple(int(round(c / 255)) * 255 for c in np.asarray(img)[y, x])

    crop = fit_square(stripes.copy(), 30, "crop")  # the centre: green only, the sides lost
    assert crop.size == (30, 30) and {colour_at(crop, x, 15) for x in (2, 15, 27)} == {(0, 255, 0)}
    squash = fit_square(stripes.copy(), 30, "squash")  # all three thirds, stretched to the full height
    assert [colour_at(squash, x, y) for x, y in [(4, 2), (15, 27), (26, 15)]] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    padded = np.asarray(fit_square(stripes.copy(), 30, "pad"))  # all three thirds at 30 x 10, grey above and below
    assert (padded[:10] == PAD_COLOUR).all() and (padded[20:] == PAD_COLOUR).all()
    assert [colour_at(padded, x, 15) for x in (4, 15, 26)] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def test_a_split_of_another_cache_is_refused(caltech_tree, cached, tmp_path):
    run_split(cached, tmp_path / "split")
    shutil.copytree(caltech_tree, tmp_path / "tree")
    (tmp_path / "tree" / "class_00" / "image_0001.jpg").unlink()  # every later row of the cache moves up by one
    build_cache(tmp_path / "tree", tmp_path / "cache", image_size=32, fit="crop", workers=1)
    with pytest.raises(UserError, match="train.csv names other images than .*index.csv.*dvc repro split"):
        CachedImages(tmp_path / "cache", tmp_path / "split", "train")


def test_splits_of_other_seeds_read_the_one_cache_and_add_no_pixels(cached, tmp_path):
    for seed in range(3):
        run_split(cached, tmp_path / f"seed{seed}", seed=seed)
    assert not list(tmp_path.rglob("*.npy"))
    assert (
        sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file()) < (cached / "pixels.npy").stat().st_size / 10
    )
    first, other = (CachedImages(cached, tmp_path / f"seed{s}", "train") for s in (0, 1))
    assert first.file == other.file and first.rows != other.rows
