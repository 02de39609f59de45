"""The one training loop, for all three modes (what a mode means is in `modes`). Model selection reads the
validation split only (with `train.final_fit` there is none: the validation images train too and the last epoch is
kept); the test split is never read here.

The summary so far (a DVC metric) and DVCLive's per-epoch plots are written as each epoch ends (`runlog`); the
best checkpoint and the history together when the run completes; until then the resume state (`resume`) holds
everything needed to continue after an interruption and still write them."""

import math
import time
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from ..core.errors import UserError
from ..data.cache import cache_fit
from ..data.split import read_classes
from . import resume
from .distributed import is_main, sum_over_processes
from .mixing import BatchMixer
from .modes import initial_model, loaders, param_groups, set_trainable, training_network
from .runlog import RunLog, write_outputs
from .runtime import Runtime

CHECK_EVERY = 50  # steps between looks at the running loss (each waits for the device and trims the CPU heap)


def train(mode, params, paths, on_epoch_end=None):
    """Train `mode`; write its best checkpoint, history and summary; return the summary.
    `on_epoch_end(epoch, model)`, when given, is called after each epoch (tests use it)."""
    seed, recipe = params["train"]["seed"], params["train"][mode]
    if params["train"]["final_fit"] and recipe["patience"]:
        raise UserError(
            f"train.{mode}.patience stops on validation, which train.final_fit: true trains on: set patience to 0 "
            "(the final fit keeps the recipe's epoch count) or final_fit to false"
        )
    runtime = Runtime(params["runtime"])
    torch.manual_seed(seed)
    classes = read_classes(paths.split)
    model, prep = initial_model(mode, params, classes, paths, cache_fit(paths.cache))
    runtime.place(model)
    groups = param_groups(mode, model, params["train"])
    generator = torch.Generator()
    learner, train_loader, val_loader = loaders(mode, model, prep, params, paths, runtime, generator)
    network = training_network(mode, learner, recipe, runtime)
    steps = Optimization.of(recipe, groups, len(train_loader), runtime)

    run_id = resume.fingerprint(mode, params, paths, model)  # before a resume state loads its weights
    resume_file = resume.resume_path(paths.checkpoint)
    state = resume.load(resume_file, run_id, model, steps.optimizer, steps.scheduler, steps.scaler, runtime.device)
    hardware = runtime.describe()
    log = RunLog(mode, paths.logs, paths.metrics, state, hardware)
    try:
        for epoch in range(state.epoch, recipe["epochs"]):
            # Seeding per epoch makes shuffling and augmentation of epoch k the same whether or not the
            # run was interrupted before it.
            torch.manual_seed(seed * 100_003 + epoch)
            generator.manual_seed(seed * 100_003 + epoch)
            set_trainable(mode, model, learner, epoch, recipe)
            lrs = {f"lr_{g['name']}": g["lr"] for g in steps.optimizer.param_groups}  # as the epoch starts
            tic = time.time()
            trained = train_one_epoch(network, train_loader, steps, runtime, f"{mode} {epoch + 1}/{recipe['epochs']}")
            validated = None if val_loader is None else validate(learner, val_loader, runtime)
            row = epoch_row(epoch + 1, trained, validated, lrs, time.time() - tic)
            state.seconds += row["epoch_seconds"]
            state.steps += len(train_loader)
            state.record(row, model)
            log.epoch(row, state)
            resume.save(resume_file, run_id, state, model, steps.optimizer, steps.scheduler, steps.scaler)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, model)
            if recipe["patience"] and state.since_best >= recipe["patience"]:
                print(f"{mode}: early stop, no better validation accuracy for {recipe['patience']} epochs")
                break
    except (torch.OutOfMemoryError, RuntimeError) as err:
        if not isinstance(err, torch.OutOfMemoryError) and "allocate memory" not in str(err):
            raise
        raise out_of_memory(mode, recipe, prep) from None
    finally:
        log.close()
    summary = write_outputs(
        state, checkpoint(state, params, prep, classes, mode), paths.checkpoint, paths.metrics, hardware
    )
    resume_file.unlink(missing_ok=True)
    return summary


@dataclass
class Optimization:
    """What a training step uses besides the network and the batch."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler  # stepped once per optimizer step
    scaler: torch.amp.GradScaler  # loss scaling, active for fp16 only
    criterion: nn.Module
    grad_clip: float  # 0: no clipping
    mixer: BatchMixer | None  # mixup / CutMix of each batch, or None

    @classmethod
    def of(cls, recipe, groups, steps_per_epoch, runtime):
        optimizer, scheduler = make_optimizer(recipe, groups, steps_per_epoch)
        scaler = torch.amp.GradScaler(runtime.device, enabled=runtime.amp_dtype == torch.float16)
        criterion = nn.CrossEntropyLoss(label_smoothing=recipe["label_smoothing"])
        return cls(optimizer, scheduler, scaler, criterion, recipe["grad_clip"], BatchMixer.of(recipe))


def epoch_row(epoch, trained, validated, lrs, seconds):
    """An epoch's line of the history: (loss, accuracy, images seen) of training, (loss, accuracy) of validation
    (None in a final fit, which has no validation)."""
    train_loss, train_acc, seen = trained
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "train_accuracy": train_acc,
        **({} if validated is None else dict(zip(("val_loss", "val_accuracy"), validated))),
        **lrs,
        "epoch_seconds": seconds,
        "images_per_second": seen / seconds,
    }


def train_one_epoch(network, loader, steps, runtime, desc):
    """One pass over the training set: (mean loss, accuracy, images seen). Loss and hits accumulate on the
    device; the host waits for them only every CHECK_EVERY steps (progress bar, finite-loss check, and on the
    CPU the heap's free pages handed back, which bounds the stage's peak memory) and once at the end."""
    total_loss = torch.zeros((), device=runtime.device)
    correct = torch.zeros((), dtype=torch.long, device=runtime.device)
    seen, tic = 0, time.time()
    bar = tqdm(loader, desc=desc, unit="batch", disable=not is_main())
    for step, (inputs, targets) in enumerate(bar, 1):
        inputs, targets = runtime.to_device(inputs), targets.to(runtime.device, non_blocking=True)
        with runtime.autocast():
            if steps.mixer is None:
                logits = network(inputs)
                loss = steps.criterion(logits.float(), targets)
            else:  # training accuracy counts hits on the original images' classes
                inputs, mixed_in, keep = steps.mixer(inputs, targets)
                logits = network(inputs)
                loss = keep * steps.criterion(logits.float(), targets)
                loss = loss + (1 - keep) * steps.criterion(logits.float(), mixed_in)
        steps.optimizer.zero_grad(set_to_none=True)
        steps.scaler.scale(loss).backward()
        if steps.grad_clip > 0:
            steps.scaler.unscale_(steps.optimizer)
            nn.utils.clip_grad_norm_(network.parameters(), steps.grad_clip)
        steps.scaler.step(steps.optimizer)
        steps.scaler.update()
        steps.scheduler.step()
        total_loss += loss.detach() * targets.size(0)
        correct += (logits.argmax(1) == targets).sum()
        seen += targets.size(0)
        if step % CHECK_EVERY == 0 or step == len(loader):
            mean_loss = total_loss.item() / seen
            check_finite(mean_loss, desc, seen)
            bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{seen / (time.time() - tic):.1f}")
            runtime.release_freed_memory()
    totals = torch.stack([total_loss, correct.float(), torch.tensor(float(seen), device=runtime.device)])
    loss_sum, hits, count = sum_over_processes(totals)[0].tolist()  # under torchrun: over all processes
    return loss_sum / count, hits / count, int(count)


def check_finite(loss, desc, seen):
    if not math.isfinite(loss):
        raise UserError(
            f"the loss became {loss} ({desc}, after {seen} images): lower the learning rate, "
            "enable train.*.grad_clip, or use precision bf16/fp32 instead of fp16"
        )


def validate(learner, loader, runtime):
    """(loss, accuracy) on the validation split (under torchrun, each process's share, summed over all)."""
    learner.eval()
    logits, labels = runtime.infer(learner, loader, "validate")
    runtime.release_freed_memory()  # inference's blocks rarely fit training's tensors
    sums = torch.stack(
        [
            nn.functional.cross_entropy(logits, labels, reduction="sum"),
            (logits.argmax(1) == labels).sum().float(),
            torch.tensor(float(len(labels))),
        ]
    )
    loss, hits, count = sum_over_processes(sums)[0].tolist()
    return loss / count, hits / count


def make_optimizer(recipe, groups, steps_per_epoch):
    """(optimizer, per-step learning-rate scheduler) of a recipe."""
    kind, wd = recipe["optimizer"], recipe["weight_decay"]
    if kind == "sgd":
        optimizer = torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=recipe["momentum"], weight_decay=wd)
    else:
        optimizer = (torch.optim.AdamW if kind == "adamw" else torch.optim.Adam)(
            groups, lr=groups[0]["lr"], weight_decay=wd
        )
    factors = [lr_factor(recipe, steps_per_epoch, g["lr"]) for g in groups]
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def lr_factor(recipe, steps_per_epoch, base_lr):
    """Multiplier of base_lr at an optimizer step: linear warm-up, then cosine to min_lr, step decay, or flat."""
    total, warmup = recipe["epochs"] * steps_per_epoch, recipe["warmup_steps"]
    floor = min(recipe["min_lr"] / base_lr, 1.0) if base_lr > 0 else 0.0

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        if recipe["scheduler"] == "step":
            return recipe["gamma"] ** (step // steps_per_epoch // recipe["step_size"])
        if recipe["scheduler"] == "cosine":
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    return factor


def checkpoint(state, params, prep, classes, mode):
    return {
        "state_dict": state.best_weights,
        "arch": params["model"]["arch"],
        "mode": mode,
        "classes": classes,
        "preprocessing": prep,
        "params": params,
        **{f"best_{k}": v for k, v in state.best.items()},
    }


def out_of_memory(mode, recipe, prep):
    smaller = max(1, recipe["batch_size"] // 2)
    return UserError(
        f"out of memory with batch size {recipe['batch_size']} at {prep['input_size']} px: lower "
        f"train.{mode}.batch_size (e.g. dvc exp run -S train.{mode}.batch_size={smaller}) or "
        "model.input_size"
    )
