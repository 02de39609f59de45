"""Where every stage reads and writes: the one definition of the project's folders and of a training run's paths.
The stages, the training loop and the learning curve all take their paths from here."""

from dataclasses import dataclass
from pathlib import Path

RAW = Path("data/raw/101_ObjectCategories")
DOWNLOADS = Path("data/downloads")
PRETRAINED = Path("data/pretrained.pt")  # the backbone weights model.weights names, in one form (model.__main__)
FEATURES = Path("data/features")  # the frozen pretrained backbone's features of every cached image (train.features)
CACHE = Path("data/cache")  # every image decoded once
SPLIT = Path("data/split")  # data/split/<seed>: each split seed's manifests, rows of the cache
MODES = ("finetune", "scratch", "feature_extract")  # as named on the stages' command lines and in their outputs
STUDY_MODES = ("feature_extract", "finetune")  # the modes trained on every split seed, in the order they train
CURVE_MODES = STUDY_MODES  # the modes with learning-curve stages
SEEDS = Path("metrics/seeds")  # metrics/seeds/<seed>/<mode>: each split seed's runs of the study's modes
CURVE = Path("metrics/curve")  # metrics/curve/<seed>/k<k>/<mode>: the learning curve's points
LADDER = Path("metrics/ladder")  # metrics/ladder/<rung>/<seed>/<mode>: the other backbones' runs
LIVE = "train"  # DVCLive's folder inside a run's metrics folder: plots/ and the summary, metrics.json
SUMMARY = f"{LIVE}/metrics.json"


@dataclass
class RunPaths:
    """What one training run reads (split, cache, the pretrained backbone and its features of the cache) and writes
    (checkpoint, metrics, TensorBoard logs)."""

    split: Path
    cache: Path
    pretrained: Path
    features: Path
    checkpoint: Path
    metrics: Path
    logs: Path
    train_per_class: int = None  # train on this many images of each class only (a learning-curve point)


def split_dir(seed):
    return SPLIT / str(seed)


def stage_run(mode, seed):
    """The paths of train_<mode>@<seed> and evaluate@<seed>-<mode>; scratch trains once, on the first seed's split,
    in models/scratch.pt and metrics/scratch."""
    folder = "scratch" if mode == "scratch" else f"seeds/{seed}/{mode}"
    checkpoint = Path("models/scratch.pt" if mode == "scratch" else f"models/seeds/{seed}/{mode}.pt")
    metrics, logs = Path(f"metrics/{folder}"), Path(f"logs/{folder}")
    return RunPaths(split_dir(seed), CACHE, PRETRAINED, FEATURES, checkpoint, metrics, logs)


def showcase(seed):
    """{mode: metrics folder} of the runs the plots and the report show one by one: the first split seed's."""
    return {mode: stage_run(mode, seed).metrics for mode in MODES}


def curve_point(mode, per_class, seed):
    """The paths of the learning-curve point (mode, k) on the split of `seed`; finetune's LP-FT head comes from the
    feature_extract checkpoint beside it, trained on the same k images per class."""
    folder = f"curve/{seed}/k{per_class}"
    return RunPaths(
        split_dir(seed),
        CACHE,
        PRETRAINED,
        FEATURES,
        Path(f"models/{folder}/{mode}.pt"),
        Path(f"metrics/{folder}/{mode}"),
        Path(f"logs/{folder}/{mode}"),
        train_per_class=per_class,
    )


def rung_weights(rung):
    """(pretrained backbone file, features folder) of the ladder's rung `rung` (ladder.<rung> in params.yaml)."""
    folder = Path("data/ladder") / rung
    return folder / "pretrained.pt", folder / "features"


def rung_run(rung, mode, seed):
    """The paths of the ladder stage training `mode` with rung `rung`'s backbone on the split of `seed`."""
    pretrained, features = rung_weights(rung)
    folder = f"ladder/{rung}/{seed}"
    return RunPaths(
        split_dir(seed),
        CACHE,
        pretrained,
        features,
        Path(f"models/{folder}/{mode}.pt"),
        LADDER / rung / str(seed) / mode,
        Path(f"logs/{folder}/{mode}"),
    )
