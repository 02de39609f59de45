"""Checkpoints on disk, and the pretrained backbone's weights: written atomically and byte for byte reproducibly;
read safely by one loader for training, evaluate, predict and resume, whose every failure (missing, empty, truncated,
corrupt, malicious, foreign or mismatched file) is a one-line UserError."""

from pathlib import Path

import torch

from ..core.cli import uninterrupted
from ..core.errors import UserError
from ..core.files import atomic_path
from ..core.layout import MODES
from .factory import build_model, pretrained_backbone

CLASSIFIER_KEYS = ("state_dict", "arch", "mode", "classes", "preprocessing")
PREPROCESSING_KEYS = {"input_size", "resize_size", "mean", "std", "interpolation", "fit"}


def save_checkpoint(obj, path):
    """torch.save through a temporary file. Saved through a file object, the archive's inner folder is named
    `archive`; saved to a path it takes the temporary file's name, process id included, and the same weights would
    give another file (and another DVC hash) on every run. A SIGTERM waits until the file is in place."""
    with uninterrupted(), atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def write_pretrained(arch, weights, path):
    """The backbone weights `weights` names for `arch` (`pretrained_backbone`), at `path`: the `pretrained` stage."""
    save_checkpoint({"arch": arch, "state_dict": pretrained_backbone(arch, weights)}, path)


def load_pretrained(path, arch):
    """The backbone state_dict at `path`, refused when it is another architecture's."""
    pretrained = load_checkpoint(path, required=("arch", "state_dict"))
    if pretrained["arch"] != arch:
        raise UserError(
            f"{path} holds weights of {pretrained['arch']}, not model.arch {arch}: run dvc repro (the pretrained "
            "stage fetches them)"
        )
    return pretrained["state_dict"]


def load_checkpoint(path, device="cpu", required=CLASSIFIER_KEYS):
    """The dict saved at `path`, loaded with weights_only (no code runs), holding the `required` keys."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found: train it first (dvc repro)")
    if path.stat().st_size == 0:
        raise UserError(f"checkpoint {path} is empty: delete it and train again (dvc repro -f)")
    try:
        obj = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises many types for truncated, corrupt or pickled-code files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path} is not a readable checkpoint ({reason[:200]}); delete it and train again") from None
    missing = [k for k in required if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise UserError(
            f"{path} is not a checkpoint of this project (no {', '.join(missing)}); "
            "give a model a train stage wrote (models/seeds/<seed>/<mode>.pt, models/scratch.pt)"
        )
    if required == CLASSIFIER_KEYS:
        check_classifier(path, obj)
    return obj


def check_classifier(path, ckpt):
    """Refuse a checkpoint whose entries have the names of this project's but not their form (an earlier version of
    the project, another program), before a good image or a missing key is blamed."""
    classes, prep = ckpt["classes"], ckpt["preprocessing"]
    in_form = {
        "state_dict": isinstance(ckpt["state_dict"], dict),
        "arch": isinstance(ckpt["arch"], str),
        "mode": ckpt["mode"] in MODES,
        "classes": isinstance(classes, list) and all(isinstance(name, str) for name in classes),
        "preprocessing": isinstance(prep, dict) and PREPROCESSING_KEYS <= set(prep),
    }
    wrong = next((entry for entry, ok in in_form.items() if not ok), None)
    if wrong:
        raise UserError(
            f"{path} is not a checkpoint of this version of the project (its {wrong} has another form); "
            "train it again with this version (dvc repro -f)"
        )


def load_classifier(path, device="cpu", mode=None):
    """(Classifier in eval mode, checkpoint dict) from a model a train stage wrote; with `mode`, one of that mode."""
    ckpt = load_checkpoint(path, device)
    if mode is not None and ckpt["mode"] != mode:
        raise UserError(
            f"{path} holds a {ckpt['mode']} model, not {mode}: restore it (dvc checkout {path}) or train it again "
            f"(dvc repro -f train_{mode})"
        )
    model, _ = build_model(ckpt["arch"], len(ckpt["classes"]))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise UserError(
            f"the weights in {path} do not fit its architecture {ckpt['arch']} "
            f"({str(err).splitlines()[0][:160]}); retrain it (dvc repro)"
        ) from None
    return model.to(device).eval(), ckpt
