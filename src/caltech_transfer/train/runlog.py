"""Where a training run reports. As each epoch ends: a line on stdout, TensorBoard scalars, and DVCLive's files in
<metrics>/train/ (a TSV per logged value under plots/metrics/, and metrics.json, the run's summary so far: a DVC
metric), which `dvc exp show`, `dvc plots show` and VS Code's DVC extension read while the stage runs. When the
run completes: the best checkpoint and the whole per-epoch history (history.tsv), together."""

from pathlib import Path

from ..core.files import write_csv
from ..core.layout import LIVE
from ..model.checkpoints import save_checkpoint
from .distributed import is_main


class RunLog:
    """Under torchrun only the first process reports; the others' RunLog does nothing."""

    def __init__(self, mode, log_dir, metrics_dir, state, hardware):
        from dvclive import Live  # slow imports, needed by training only
        from torch.utils.tensorboard import SummaryWriter

        self.mode, self.hardware, self.active = mode, hardware, is_main()
        if not self.active:
            return
        if state.epoch == 0:  # a fresh run starts a fresh TensorBoard log
            for old in Path(log_dir).glob("events.out.tfevents.*"):
                old.unlink()
        self.writer = SummaryWriter(log_dir)
        # Not DVCLive's resume: it appends to files that may hold an epoch the resume state lost in a crash.
        # DVCLive starts them afresh and the state's epochs are written again, so each epoch is there once.
        # dvc.yaml declares the files (dvcyaml=None) and `dvc exp run` saves the experiment (save_dvc_exp=False).
        self.live = Live(str(Path(metrics_dir) / LIVE), dvcyaml=None, save_dvc_exp=False, report=None)
        for row in state.history:
            self._log_live(row)
        if state.history:
            self._summarise(state)

    def epoch(self, row, state):
        if not self.active:
            return
        validated = "val_accuracy" in row
        print(
            f"{self.mode} epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f} "
            + (f"| val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f} " if validated else "")
            + f"| {row['images_per_second']:.1f} img/s"
        )
        epoch = row["epoch"]
        for split in ("train", "val") if validated else ("train",):
            self.writer.add_scalar(f"loss/{split}", row[f"{split}_loss"], epoch)
            self.writer.add_scalar(f"accuracy/{split}", row[f"{split}_accuracy"], epoch)
        for key, value in row.items():
            if key.startswith("lr_"):
                self.writer.add_scalar(f"lr/{key[3:]}", value, epoch)
        self.writer.add_scalar("time/epoch_seconds", row["epoch_seconds"], epoch)
        self.writer.add_scalar("time/images_per_second", row["images_per_second"], epoch)
        self.writer.flush()
        self._log_live(row)
        self._summarise(state)

    def _log_live(self, row):
        self.live.step = row["epoch"]
        for key, value in row.items():
            if key != "epoch":
                self.live.log_metric(key, value)

    def _summarise(self, state):
        """metrics.json: the summary so far, not every logged value (log_metric puts each in), so that the
        experiments table stays a few columns per mode; DVCLive adds `step`, the last finished epoch."""
        self.live.summary = summary(state, self.hardware)
        self.live.make_summary()

    def close(self):
        if self.active:
            self.writer.close()


def summary(state, hardware):
    """The run so far: its latest validation accuracy, its best epoch (the last in a final fit, which has no
    validation), the time and optimizer steps it trained, where and how."""
    validated = "val_accuracy" in state.best
    return {
        **({"val_accuracy": state.history[-1]["val_accuracy"]} if validated else {}),
        "best_epoch": state.best["epoch"],
        **({"best_val_accuracy": state.best["val_accuracy"]} if validated else {}),
        "train_seconds": round(state.seconds, 1),
        "optimizer_steps": state.steps,
        **hardware,
    }


def write_history(history, path):
    keys = list(history[0])
    write_csv(
        path,
        keys,
        [[f"{row[k]:.6g}" if isinstance(row[k], float) else row[k] for k in keys] for row in history],
        delimiter="\t",
    )


def write_outputs(state, checkpoint, checkpoint_path, metrics_dir, hardware):
    """The run's outputs, written together at its end (by the first process only): best weights and history.
    Returns the summary, which the last epoch's RunLog.epoch already wrote."""
    if is_main():
        save_checkpoint(checkpoint, checkpoint_path)
        write_history(state.history, Path(metrics_dir) / "history.tsv")
    return summary(state, hardware)
