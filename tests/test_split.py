import csv
import json

import numpy as np
import pytest
from PIL import Image

from caltech_transfer.batches.datasets import CachedImages
from caltech_transfer.core.errors import UserError
from caltech_transfer.data import split
from caltech_transfer.data.cache import build_cache
from caltech_transfer.data.images import PAD_COLOUR, fit_square

STANDARD = {
    "scheme": "standard",
    "seed": 0,
    "train_per_class": 8,
    "val_per_class": 2,
    "test_per_class": None,
    "ratios": [0.8, 0.1, 0.1],
    "include_background": False,
}


def run_split(tree, out, **overrides):
    return split.run(tree, out, {**STANDARD, **overrides}, workers=1)


def rows(out, name):
    with open(out / f"{name}.csv") as f:
        return list(csv.DictReader(f))


def test_same_seed_gives_identical_manifests_and_another_seed_differs(caltech_tree, tmp_path):
    run_split(caltech_tree, tmp_path / "a")
    run_split(caltech_tree, tmp_path / "b")
    run_split(caltech_tree, tmp_path / "c", seed=1)
    for name in split.SPLITS:
        assert (tmp_path / "a" / f"{name}.csv").read_bytes() == (tmp_path / "b" / f"{name}.csv").read_bytes()
    assert (tmp_path / "a" / "train.csv").read_bytes() != (tmp_path / "c" / "train.csv").read_bytes()


def test_standard_counts_are_exact_and_splits_disjoint(caltech_tree, tmp_path):
    summary = run_split(caltech_tree, tmp_path)
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


def test_test_cap_and_ratio_scheme(caltech_tree, tmp_path):
    assert run_split(caltech_tree, tmp_path / "cap", test_per_class=3)["test"] == 9
    summary = run_split(caltech_tree, tmp_path / "ratio", scheme="ratio", ratios=[0.5, 0.25, 0.25])
    assert (summary["train"], summary["val"], summary["test"]) == (6 + 6 + 6, 3 + 3 + 3, 4 + 4 + 3)


def test_background_excluded_by_default_and_included_on_request(caltech_tree, tmp_path):
    run_split(caltech_tree, tmp_path / "default")
    assert "BACKGROUND_Google" not in (tmp_path / "default" / "classes.txt").read_text()
    summary = run_split(caltech_tree, tmp_path / "bg", include_background=True, train_per_class=3, val_per_class=1)
    assert "BACKGROUND_Google" in (tmp_path / "bg" / "classes.txt").read_text().split()
    assert "BACKGROUND_Google/tmp" in summary["skipped_files"]


def test_corrupt_and_non_image_files_are_skipped_and_reported(caltech_tree, tmp_path):
    run_split(caltech_tree, tmp_path, include_background=True, train_per_class=3, val_per_class=1)
    report = {r["path"]: r["reason"] for r in rows(tmp_path, "skipped")}
    assert set(report) == {"BACKGROUND_Google/tmp", "class_02/image_0903.jpg", "class_01/image_0904.jpg"}
    assert report["BACKGROUND_Google/tmp"] == "not an image file (no image suffix)"
    assert report["class_01/image_0904.jpg"] == "not an image (unrecognised content)"
    assert report["class_02/image_0903.jpg"].startswith("cannot decode")
    listed = {r["path"] for name in split.SPLITS for r in rows(tmp_path, name)}
    assert not listed & set(report)
    assert {"class_00/image_0901.jpg", "class_01/image_0902.jpg"} <= listed  # grayscale and CMYK kept


def test_too_few_images_is_a_clear_error(caltech_tree, tmp_path):
    with pytest.raises(UserError, match="lower it"):
        run_split(caltech_tree, tmp_path, train_per_class=30)


def test_cache_holds_rgb_squares_in_manifest_order(caltech_tree, tmp_path):
    run_split(caltech_tree, tmp_path / "split")
    build_cache(caltech_tree, tmp_path / "split", tmp_path / "cache", image_size=32, fit="crop", workers=1)
    train = CachedImages(tmp_path / "cache", tmp_path / "split", "train")
    pixels = np.load(tmp_path / "cache" / "train.npy")
    assert pixels.shape == (18, 32, 32, 3) and pixels.dtype == np.uint8
    image, label = train[0]
    assert image.shape == (3, 32, 32) and label.item() == 0
    assert train.paths == [r["path"] for r in rows(tmp_path / "split", "train")]
    all_rows = [r["path"] for name in split.SPLITS for r in rows(tmp_path / "split", name)]
    assert "class_00/image_0901.jpg" in all_rows
    split_name = next(
        n
        for n in split.SPLITS
        if "class_00/image_0901.jpg" in CachedImages(tmp_path / "cache", tmp_path / "split", n).paths
    )
    data = CachedImages(tmp_path / "cache", tmp_path / "split", split_name)
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


def test_a_cache_of_another_split_is_refused(caltech_tree, tmp_path):
    run_split(caltech_tree, tmp_path / "split")
    build_cache(caltech_tree, tmp_path / "split", tmp_path / "cache", image_size=32, fit="crop", workers=1)
    run_split(caltech_tree, tmp_path / "split", seed=1)  # same counts, other images
    with pytest.raises(UserError, match="holds other images than .*train.csv.*dvc repro split"):
        CachedImages(tmp_path / "cache", tmp_path / "split", "train")
