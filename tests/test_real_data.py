"""On the real Caltech-101 and the real pretrained weights in ../shared (skipped when ../shared is absent)."""

import json

import pytest

from caltech_transfer.data import download, split
from caltech_transfer.data.cache import build_cache
from caltech_transfer.train import engine
from conftest import SHARED, data_paths, stage_params

ZIP = SHARED / "datasets" / "caltech-101.zip"
WEIGHTS = SHARED / "weights" / "tf_efficientnet_lite0_in1k.pth"
# this copy leaves the annotations out, so its checksums differ from the official ones (see ../shared/README.md)
ZIP_MD5 = "md5:f527068f45fe3f63acd224f9143196bd"
TAR_MD5 = "md5:48d74becb160adb15c07c2376cebfd14"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not ZIP.exists(), reason="../shared/datasets/caltech-101.zip is not here"),
]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    categories = download.run(str(ZIP), ZIP_MD5, TAR_MD5, root / "raw", root / "downloads")
    build_cache(categories, root / "cache", 256, "pad", workers=2)
    return root, categories


def test_the_cache_holds_every_image_and_skips_only_the_non_image(real):
    root, _ = real
    assert json.loads((root / "cache" / "meta.json").read_text())["images"] == 8677 + 467
    assert (
        root / "cache" / "skipped.csv"
    ).read_text() == "path,reason\nBACKGROUND_Google/tmp,not an image file (no image suffix)\n"


def test_standard_split_counts_on_the_real_data(real):
    root, _ = real
    summary = split.run(root / "cache", root / "split", stage_params("split")["split"], 0)
    assert (summary["classes"], summary["train"], summary["val"], summary["test"]) == (101, 2525, 505, 5647)
    assert json.loads((root / "split" / "summary.json").read_text())["test"] == 5647
    params = {**stage_params("split")["split"], "include_background": True}
    assert split.run(root / "cache", root / "split_bg", params, 0)["classes"] == 102


@pytest.mark.skipif(not WEIGHTS.exists(), reason="../shared/weights is not here")
def test_feature_extract_with_pretrained_weights_is_accurate(real, tmp_path):
    root, _ = real
    if not (root / "split" / "train.csv").exists():
        split.run(root / "cache", root / "split", stage_params("split")["split"], 0)
    params = stage_params(
        "train_feature_extract",
        **{
            "model.arch": "timm/tf_efficientnet_lite0",
            "model.input_size": None,
            "runtime.precision": "auto",
            "runtime.channels_last": True,
            "train.workers": 2,
            "train.feature_extract.epochs": 30,
            "train.feature_extract.batch_size": 64,
        },
    )
    paths = data_paths(root, tmp_path, "feature_extract", params, str(WEIGHTS))
    summary = engine.train("feature_extract", params, paths)
    # 101 classes, chance is 1%; a linear head on these ImageNet features reaches about 92-94%
    assert summary["best_val_accuracy"] >= 0.9
