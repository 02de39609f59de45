"""Where every stage reads and writes: the one definition of the project's folders and of a training run's paths.
The stages, the training loop and the learning curve all take their paths from here."""

from dataclasses import dataclass
from pathlib import Path

RAW = Path("data/raw/101_ObjectCategories")
DOWNLOADS = Path("data/downloads")
PRETRAINED = Path("data/pretrained.pt")  # the backbone weights model.weights names, in one form (model.__main__)
SPLIT = Path("data/split")  # the manifests
CACHE = SPLIT / "cache"  # their images, decoded: one stage writes both
MODES = ("finetune", "scratch", "feature_extract")  # as named on the stages' command lines and in their outputs
CURVE_MODES = ("feature_extract", "finetune")  # the modes with learning-curve stages
LIVE = "train"  # DVCLive's folder inside a run's metrics folder: plots/ and the summary, metrics.json
SUMMARY = f"{LIVE}/metrics.json"


@dataclass
class RunPaths:
    """What one training run reads (split, cache, the pretrained backbone) and writes (checkpoint, metrics,
    TensorBoard logs)."""

    split: Path
    cache: Path
    pretrained: Path
    checkpoint: Path
    metrics: Path
    logs: Path
    train_per_class: int = None  # train on this many images of each class only (a learning-curve point)


def stage_run(mode):
    """The paths of train_<mode> and evaluate@<mode>."""
    return RunPaths(SPLIT, CACHE, PRETRAINED, Path(f"models/{mode}.pt"), Path(f"metrics/{mode}"), Path(f"logs/{mode}"))


def curve_point(mode, per_class):
    """The paths of the learning-curve point (mode, k); finetune's LP-FT head comes from the feature_extract
    checkpoint beside it, trained on the same k images per class."""
    folder = f"curve/k{per_class}"
    return RunPaths(
        SPLIT,
        CACHE,
        PRETRAINED,
        Path(f"models/{folder}/{mode}.pt"),
        Path(f"metrics/{folder}/{mode}"),
        Path(f"logs/{folder}/{mode}"),
        train_per_class=per_class,
    )
