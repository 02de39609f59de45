"""Where a training run reports: one line per epoch on stdout and TensorBoard scalars as it goes; the
per-epoch history (TSV) and the summary (JSON, a DVC metric) once, when the run completes."""

from pathlib import Path

from ..core.files import write_csv, write_json
from ..model.checkpoints import save_checkpoint
from .distributed import is_main


class RunLog:
    """Under torchrun only the first process reports; the others' RunLog does nothing."""

    def __init__(self, mode, log_dir, fresh):
        from torch.utils.tensorboard import SummaryWriter  # slow import, needed by training only

        self.mode, self.active = mode, is_main()
        if not self.active:
            return
        if fresh:  # a fresh run starts a fresh TensorBoard log
            for old in Path(log_dir).glob("events.out.tfevents.*"):
                old.unlink()
        self.writer = SummaryWriter(log_dir)

    def epoch(self, row):
        if not self.active:
            return
        print(
            f"{self.mode} epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f} "
            f"| val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f} | {row['images_per_second']:.1f} img/s"
        )
        epoch = row["epoch"]
        for split in ("train", "val"):
            self.writer.add_scalar(f"loss/{split}", row[f"{split}_loss"], epoch)
            self.writer.add_scalar(f"accuracy/{split}", row[f"{split}_accuracy"], epoch)
        for key, value in row.items():
            if key.startswith("lr_"):
                self.writer.add_scalar(f"lr/{key[3:]}", value, epoch)
        self.writer.add_scalar("time/epoch_seconds", row["epoch_seconds"], epoch)
        self.writer.add_scalar("time/images_per_second", row["images_per_second"], epoch)
        self.writer.flush()

    def close(self):
        if self.active:
            self.writer.close()


def summary(state):
    return {
        "best_epoch": state.best["epoch"],
        "best_val_accuracy": state.best["val_accuracy"],
        "best_val_loss": state.best["val_loss"],
        "epochs_run": state.epoch,
        "train_seconds": round(state.seconds, 1),
    }


def write_history(history, path):
    keys = list(history[0])
    write_csv(
        path,
        keys,
        [[f"{row[k]:.6g}" if isinstance(row[k], float) else row[k] for k in keys] for row in history],
        delimiter="\t",
    )


def write_outputs(state, checkpoint, checkpoint_path, metrics_dir):
    """The run's outputs, written together at its end (by the first process only): best weights, history,
    summary."""
    if not is_main():
        return summary(state)
    save_checkpoint(checkpoint, checkpoint_path)
    write_history(state.history, Path(metrics_dir) / "history.tsv")
    write_json(Path(metrics_dir) / "train.json", summary(state))
    return summary(state)
