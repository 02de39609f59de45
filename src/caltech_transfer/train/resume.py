"""The state of a training run between epochs: history, best epoch (with a copy of its weights), time spent,
and what the optimizer needs to continue. Written after every epoch to <checkpoint>.resume.pt, outside DVC's
outputs, so an interrupted stage continues where it stopped and can still write every output at the end."""

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..core.errors import UserError
from ..core.params import SPEED_ONLY
from ..model.checkpoints import load_checkpoint, save_checkpoint
from .distributed import is_main
from .features import META, VALUES
from .modes import MODES


@dataclass
class RunState:
    epoch: int = 0  # epochs completed
    history: list = field(default_factory=list)
    best: dict = None  # {"epoch", "val_accuracy", "val_loss"} of the best validation epoch; {"epoch"} of the last
    # one in a final fit (no validation)
    best_weights: dict = None  # a copy of the model's state_dict at that epoch
    since_best: int = 0  # epochs since the best one, for early stopping
    seconds: float = 0.0  # training time over all sessions of this run
    steps: int = 0  # optimizer steps taken

    def record(self, row, model):
        """Add an epoch's row; keep a copy of the weights when its validation accuracy is the best so far
        (ties broken by the lower validation loss), or, without validation, when it is the latest. True when kept."""
        self.history.append(row)
        self.epoch = row["epoch"]
        best, validated = self.best, "val_accuracy" in row
        if (
            best is None
            or not validated
            or (row["val_accuracy"], -row["val_loss"]) > (best["val_accuracy"], -best["val_loss"])
        ):
            self.best = {k: row[k] for k in ("epoch", "val_accuracy", "val_loss") if k in row}
            # a real copy: the live weights keep changing after this epoch
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.since_best = 0
            return True
        self.since_best += 1
        return False


READ_FILES = {"split": ("classes.txt", "train.csv", "val.csv"), "cache": ("meta.json", "index.csv", "pixels.npy")}
PACKAGE = Path(__file__).resolve().parents[1]  # the code of every stage


def fingerprint(mode, params, paths, model):
    """Identifies the run a resume state belongs to by everything that decides it: the mode, its params (less the
    settings of speed alone), the content of the files it reads (the split's manifests, the cached pixels and the
    backbone's features where the head trains on them), the
    weights it starts from (the model before its first step: pretrained, random, and the head another mode trained)
    and the package's code. A state of any other run is not resumed."""
    digest = hashlib.sha256(json.dumps([mode, run_params(params), paths.train_per_class], sort_keys=True).encode())
    read = dict(READ_FILES, features=(META, VALUES)) if MODES[mode].features_once(params["train"][mode]) else READ_FILES
    for folder, names in read.items():
        for name in names:
            with open(Path(getattr(paths, folder), name), "rb") as f:
                digest.update(hashlib.file_digest(f, "sha256").digest())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().reshape(-1).cpu().contiguous().view(torch.uint8).numpy().tobytes())
    for source in sorted(PACKAGE.rglob("*.py")):
        digest.update(source.relative_to(PACKAGE).as_posix().encode() + source.read_bytes())
    return digest.hexdigest()


def run_params(params):
    """`params` without the settings of speed alone (`core.params.SPEED_ONLY`): a run resumes with other ones."""
    kept = json.loads(json.dumps(params))
    for dotted in SPEED_ONLY:
        section, key = dotted.split(".")
        kept.get(section, {}).pop(key, None)
    return kept


def resume_path(checkpoint_path):
    checkpoint_path = Path(checkpoint_path)
    return checkpoint_path.with_name(checkpoint_path.stem + ".resume.pt")


def save(path, run_fingerprint, state, model, optimizer, scheduler, scaler):
    if not is_main():  # every process holds the same state; one writes it
        return
    save_checkpoint(
        {
            "fingerprint": run_fingerprint,
            "state": asdict(state),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
        },
        path,
    )


def load(path, run_fingerprint, model, optimizer, scheduler, scaler, device):
    """The saved RunState, with model and optimizer restored, when `path` holds a state of this very run;
    otherwise a fresh RunState. A damaged file is moved aside (the model may be half-loaded by then, so the
    run stops, and the next one starts afresh)."""
    path = Path(path)
    if not path.exists():
        return RunState()
    try:
        saved = load_checkpoint(path, device, ("fingerprint", "state", "model", "optimizer", "scheduler", "scaler"))
        if saved["fingerprint"] != run_fingerprint:
            return RunState()
        state = RunState(**saved["state"])
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
    except (UserError, RuntimeError, ValueError, KeyError, TypeError) as err:
        aside = path.with_name(path.name + ".damaged")
        path.replace(aside)
        raise UserError(
            f"cannot resume from {path} ({err}); it was moved to {aside}: run the stage again to start afresh"
        ) from None
    if is_main():
        print(f"resuming after epoch {state.epoch} from {path}")
    return state
