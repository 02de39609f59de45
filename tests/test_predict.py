"""`caltech-predict`: new images fitted as the cache fitted the training images, and the known class returned."""

import json

import torch

from caltech_transfer.evaluation.predict import main as predict_main
from caltech_transfer.evaluation.predict import predict
from conftest import make_tree


def test_predict_fits_new_images_as_the_cache_did(small_dataset, trained):
    assert json.loads((small_dataset / "cache" / "meta.json").read_text())["fit"] == "pad"
    assert torch.load(trained / "models" / "finetune.pt", weights_only=True)["preprocessing"]["fit"] == "pad"


def test_predict_returns_the_known_class(small_dataset, trained, tmp_path, capsys):
    fresh = make_tree(tmp_path / "new", per_class=(2, 2, 2), background=0, extras=False, seed=7)
    (fresh / "class_00" / "notes.txt").write_text("not an image")
    results = predict(trained / "models" / "finetune.pt", [fresh])
    good = [(path, top) for path, top, error in results if top]
    assert len(good) == 6
    assert all(top[0][0] == path.parent.name for path, top in good)
    assert all(len(top) == 3 and abs(sum(p for _, p in top) - 1) < 1e-4 for _, top in good)
    predict_main([str(trained / "models" / "finetune.pt"), str(fresh), "--csv", str(tmp_path / "out.csv")])
    captured = capsys.readouterr()
    assert "notes.txt: skipped, not a readable image" in captured.err
    assert "class_01/image_0001.jpg: class_01" in captured.out
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 1 + 6 * 3
