"""Checkpoints on disk: written atomically and byte for byte reproducibly; read safely by one loader for evaluate,
predict and resume, whose every failure (missing, empty, truncated, corrupt, malicious, foreign or mismatched file)
is a one-line UserError."""

from pathlib import Path

import torch

from ..core.cli import uninterrupted
from ..core.errors import UserError
from ..core.files import atomic_path
from .factory import build_model

CLASSIFIER_KEYS = ("state_dict", "arch", "mode", "classes", "preprocessing")


def save_checkpoint(obj, path):
    """torch.save through a temporary file. Saved through a file object, the archive's inner folder is named
    `archive`; saved to a path it takes the temporary file's name, process id included, and the same weights would
    give another file (and another DVC hash) on every run. A SIGTERM waits until the file is in place."""
    with uninterrupted(), atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


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
            "give a models/<mode>.pt written by the train stage"
        )
    return obj


def load_classifier(path, device="cpu"):
    """(Classifier in eval mode, checkpoint dict) from a models/<mode>.pt file."""
    ckpt = load_checkpoint(path, device)
    model, _ = build_model(ckpt["arch"], "none", len(ckpt["classes"]))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise UserError(
            f"the weights in {path} do not fit its architecture {ckpt['arch']} "
            f"({str(err).splitlines()[0][:160]}); retrain it (dvc repro)"
        ) from None
    return model.to(device).eval(), ckpt
