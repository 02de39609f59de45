"""The `features` stage (`python -m caltech_transfer.train.features`): the frozen pretrained backbone's features of
every cached image, computed once, in data/features (`ladder_features@<rung>`, `... features <rung>`: those of the
ladder rung's backbone, in data/ladder/<rung>/features). They do not depend on the split: every seed's feature
extraction trains its head on them, and its evaluation, the learning curve's feature-extraction points and the plots'
map read them, so no image goes through the frozen backbone twice, however many split seeds run. Fine-tuning's passes
stay its own."""

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch

from ..batches.datasets import CachedImages, eval_batches, eval_transform
from ..core.cli import cli, stage_arguments
from ..core.errors import UserError
from ..core.files import atomic_path, read_json, write_json
from ..core.layout import CACHE, FEATURES, PRETRAINED, rung_weights
from ..core.params import load_params, with_rung
from ..model.checkpoints import load_pretrained
from ..model.factory import build_model, check_input_size
from .distributed import ShardedSampler
from .runtime import Runtime

VALUES, META = "features.npy", "meta.json"


def write_features(cache_dir, pretrained, out_dir, model_params, runtime_params, batch_size=64, workers=0):
    """Run the backbone `pretrained` holds over every image of the cache, preprocessed as model.* says, and write
    its features (float32, one row per cached image) with meta.json naming that preprocessing and the weights."""
    m, runtime = model_params, Runtime(runtime_params)
    model, prep = build_model(m["arch"], 1, load_pretrained(pretrained, m["arch"]), m["input_size"], m["crop_pct"])
    check_input_size(model, prep["input_size"], m["arch"])
    runtime.place(model.eval())
    images = CachedImages.every_image(cache_dir, eval_transform(prep))
    batches = eval_batches(images, prep, batch_size, runtime.inference_workers(workers), ShardedSampler(len(images)))
    features, _ = runtime.infer(runtime.compiled(model.features), batches, "features")
    out_dir = Path(out_dir)
    with atomic_path(out_dir / VALUES) as partial, open(partial, "wb") as f:
        np.save(f, features.numpy())
    write_json(out_dir / META, {"arch": m["arch"], "preprocessing": prep, "weights": digest(pretrained)})
    print(f"features: {features.shape[1]} per image of {len(images)}, by {m['arch']} at {prep['input_size']} px")


def digest(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_features(features_dir, arch, prep, rows):
    """The features of the cache's `rows`, after checking that they were computed by `arch` with the preprocessing
    `prep` (how the cache fitted images aside, which the cache decides)."""
    meta_file, values_file = Path(features_dir) / META, Path(features_dir) / VALUES
    if not meta_file.exists() or not values_file.exists():
        raise UserError(f"{values_file} not found: run the features stage (dvc repro features)")
    meta = read_json(meta_file)
    wanted = {k: v for k, v in prep.items() if k != "fit"}
    if meta["arch"] != arch or meta["preprocessing"] != json_like(wanted):
        raise UserError(
            f"{values_file} was computed by {meta['arch']} at {meta['preprocessing']['input_size']} px, not by this "
            f"run's {arch} at {prep['input_size']} px: run the features stage again (dvc repro features)"
        )
    return torch.from_numpy(np.load(values_file, mmap_mode="r")[rows])


def json_like(value):
    """`value` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(value))


@cli
def main():
    if len(sys.argv) == 1:
        p = load_params("features")
        write_features(CACHE, PRETRAINED, FEATURES, p["model"], p["runtime"], **p["evaluate"])
        return
    (rung,) = stage_arguments(sys.argv, str)
    p = with_rung(load_params("ladder_features", item={"key": rung}), rung)
    write_features(CACHE, *rung_weights(rung), p["model"], p["runtime"], **p["evaluate"])


if __name__ == "__main__":
    main()
