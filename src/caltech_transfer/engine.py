"""The one training engine. The three modes share this loop; a mode only decides what is frozen, which
learning rates apply and where the weights come from:

- finetune: pretrained backbone at train.finetune_lr, new head at train.head_lr (optionally the head alone
  for the first `freeze_epochs` epochs);
- scratch: random init, everything at train.scratch.lr;
- feature_extract: pretrained backbone frozen (BatchNorm statistics included), only the head trains,
  by default on backbone features computed once.

Model selection uses the validation split only; the test split is never read here."""
import hashlib
import json
import math
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset
from tqdm import tqdm

from .data import CachedImages, eval_transform, make_loader, train_transform
from .errors import UserError
from .models import build_model, check_arch, save_checkpoint
from .split import read_classes

MODES = ("finetune", "scratch", "feature_extract")


def mode_argument(argv):
    """The mode named on a stage script's command line, e.g. `python stages/train.py finetune`."""
    if len(argv) != 2 or argv[1] not in MODES:
        raise UserError(f"usage: python {argv[0]} {{{'|'.join(MODES)}}}")
    return argv[1]


def resolve_device(name):
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device is cuda but no GPU is visible to torch; set train.device: auto or cpu")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def cpu_has_fast_bf16():
    """True when oneDNN runs bf16 natively (AVX512-BF16 / AMX); elsewhere bf16 is emulated and slower
    than fp32 (measured: 4 vs 35 img/s for tf_efficientnet_lite0 inference on an AVX2-only CPU)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(precision, device):
    """The autocast dtype, or None for fp32. auto: CUDA bf16 (fp16 on older GPUs); CPU bf16 where the CPU
    has native bf16 (2-3x faster than fp32 there), else fp32."""
    if precision == "auto":
        if device == "cpu":
            return torch.bfloat16 if cpu_has_fast_bf16() else None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and device == "cpu":
        raise UserError("train.precision fp16 needs CUDA; on CPU use bf16 or fp32")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def configure_mode(mode, model, train_params):
    """Freeze what the mode freezes; return the optimizer's parameter groups with their learning rates."""
    backbone, head = list(model.backbone.parameters()), list(model.head.parameters())
    if mode == "finetune":
        return [{"name": "backbone", "params": backbone, "lr": train_params["finetune_lr"]},
                {"name": "head", "params": head, "lr": train_params["head_lr"]}]
    if mode == "scratch":
        return [{"name": "all", "params": backbone + head, "lr": train_params["scratch"]["lr"]}]
    if mode == "feature_extract":
        for p in backbone:
            p.requires_grad_(False)
        return [{"name": "head", "params": head, "lr": train_params["feature_extract"]["lr"]}]
    raise UserError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")


def make_optimizer(recipe, groups):
    kind, wd = recipe["optimizer"], recipe["weight_decay"]
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=recipe["momentum"], weight_decay=wd)
    optimizer = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    return optimizer(groups, lr=groups[0]["lr"], weight_decay=wd)


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


def run_batches(fn, loader, device, amp_dtype, desc, channels_last=False):
    """fn(inputs) over a loader without gradients: (outputs as float32 on CPU, labels)."""
    outputs, labels = [], []
    with torch.inference_mode(), torch.autocast(device, dtype=amp_dtype or torch.float32,
                                                enabled=amp_dtype is not None):
        for inputs, targets in tqdm(loader, desc=desc, unit="batch", leave=False):
            inputs = _to_device(inputs, device, channels_last)
            outputs.append(fn(inputs).float().cpu())
            labels.append(targets)
    return torch.cat(outputs), torch.cat(labels)


def _to_device(inputs, device, channels_last):
    inputs = inputs.to(device, non_blocking=True)
    if channels_last and inputs.dim() == 4:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs


def _set_trainable(model, net, backbone_frozen):
    net.train()
    if backbone_frozen and net is model:
        model.backbone.eval()  # frozen BatchNorm keeps its running statistics
    for p in model.backbone.parameters():
        p.requires_grad_(not backbone_frozen)


def _fingerprint(mode, params, train_set):
    """Identifies the run a resume state belongs to: same mode, params and training images."""
    blob = json.dumps([mode, params, train_set.paths, train_set.labels.tolist()], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _write_history(history, path):
    keys = list(history[0])
    lines = ["\t".join(keys)] + ["\t".join(f"{row[k]:.6g}" if isinstance(row[k], float) else str(row[k])
                                           for k in keys) for row in history]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def train(mode, params, split_dir, cache_dir, checkpoint_path, metrics_dir, log_dir, on_epoch_end=None):
    """Train `mode` and write its best checkpoint, per-epoch history and summary; return the summary.
    `on_epoch_end(epoch, model)`, when given, is called after each epoch's checkpoints are written.

    A resume state (<checkpoint>.resume.pt) written after every epoch lets an interrupted run continue
    where it stopped when it is started again with the same params and data."""
    from torch.utils.tensorboard import SummaryWriter

    started = time.time()
    t = params["train"]
    recipe = t[mode]
    check_arch(params["model"]["arch"])  # before any data is read, so a typo fails at once
    device = resolve_device(t["device"])
    amp_dtype = autocast_dtype(t["precision"], device)
    checkpoint_path, metrics_dir = Path(checkpoint_path), Path(metrics_dir)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    resume_path = checkpoint_path.with_name(checkpoint_path.stem + ".resume.pt")

    torch.manual_seed(t["seed"])
    classes = read_classes(split_dir)
    weights = "none" if mode == "scratch" else params["model"]["weights"]
    model, prep = build_model(params["model"]["arch"], weights, len(classes), params["model"]["input_size"])
    channels_last = t["channels_last"]
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    groups = configure_mode(mode, model, t)

    train_set = CachedImages(cache_dir, split_dir, "train", train_transform(prep, params["augment"]))
    val_set = CachedImages(cache_dir, split_dir, "val", eval_transform(prep))
    fingerprint = _fingerprint(mode, params, train_set)
    precompute = mode == "feature_extract" and not recipe["augment"]
    net = model
    if precompute:  # the frozen backbone's features do not change: compute them once
        model.eval()
        train_set = TensorDataset(*run_batches(
            model.features, make_loader(CachedImages(cache_dir, split_dir, "train", eval_transform(prep)),
                                        recipe["batch_size"], workers=t["workers"]),
            device, amp_dtype, "features train", channels_last))
        val_set = TensorDataset(*run_batches(model.features, make_loader(val_set, recipe["batch_size"],
                                                                         workers=t["workers"]),
                                             device, amp_dtype, "features val", channels_last))
        net = model.head

    generator = torch.Generator()
    loader_workers = 0 if precompute else t["workers"]
    train_loader = make_loader(train_set, recipe["batch_size"], shuffle=True, workers=loader_workers,
                               generator=generator)
    val_loader = make_loader(val_set, recipe["batch_size"], workers=loader_workers)
    optimizer = make_optimizer(recipe, groups)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, [lr_factor(recipe, len(train_loader), g["lr"]) for g in groups])
    scaler = torch.amp.GradScaler(device, enabled=amp_dtype == torch.float16)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe["label_smoothing"])

    state = {"epoch": 0, "history": [], "best": None, "best_state": None, "since_best": 0}
    if resume_path.exists():
        saved = torch.load(resume_path, map_location=device, weights_only=True)
        if saved["fingerprint"] == fingerprint:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            scaler.load_state_dict(saved["scaler"])
            state = saved["state"]
            print(f"{mode}: resuming after epoch {state['epoch']} from {resume_path}")
    if state["epoch"] == 0 and Path(log_dir).exists():  # a fresh run starts a fresh TensorBoard log
        for old in Path(log_dir).glob("events.out.tfevents.*"):
            old.unlink()
    writer = SummaryWriter(log_dir)
    freeze_epochs = recipe.get("freeze_epochs", 0)
    try:
        for epoch in range(state["epoch"], recipe["epochs"]):
            # Seeding per epoch makes shuffling and augmentation of epoch k the same whether or not the
            # run was interrupted before it.
            torch.manual_seed(t["seed"] * 100_003 + epoch)
            generator.manual_seed(t["seed"] * 100_003 + epoch)
            backbone_frozen = mode == "feature_extract" or epoch < freeze_epochs
            _set_trainable(model, net, backbone_frozen)
            lrs = {f"lr_{g['name']}": g["lr"] for g in optimizer.param_groups}  # as the epoch starts
            tic = time.time()
            train_loss, train_acc, seen = _train_one_epoch(
                net, train_loader, criterion, optimizer, scheduler, scaler, device, amp_dtype,
                recipe["grad_clip"], channels_last, f"{mode} {epoch + 1}/{recipe['epochs']}")
            net.eval()
            logits, labels = run_batches(net, val_loader, device, amp_dtype, "validate", channels_last)
            val_loss = nn.functional.cross_entropy(logits, labels).item()
            val_acc = (logits.argmax(1) == labels).float().mean().item()
            seconds = time.time() - tic
            row = {"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc,
                   "val_loss": val_loss, "val_accuracy": val_acc,
                   **lrs,
                   "epoch_seconds": seconds, "images_per_second": seen / seconds}
            state["history"].append(row)
            best = state["best"]
            if best is None or val_acc > best["val_accuracy"] or (
                    val_acc == best["val_accuracy"] and val_loss < best["val_loss"]):
                state["best"] = {"epoch": epoch + 1, "val_accuracy": val_acc, "val_loss": val_loss}
                # a real copy: the live weights keep changing after this epoch
                state["best_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
                state["since_best"] = 0
                save_checkpoint(_checkpoint(model, state, params, prep, classes, mode), checkpoint_path)
            else:
                state["since_best"] += 1
            state["epoch"] = epoch + 1
            _log(writer, row)
            _write_history(state["history"], metrics_dir / "history.tsv")
            print(f"{mode} epoch {epoch + 1}: train loss {train_loss:.4f} acc {train_acc:.4f} | "
                  f"val loss {val_loss:.4f} acc {val_acc:.4f} | {seen / seconds:.1f} img/s")
            save_checkpoint({"fingerprint": fingerprint, "model": model.state_dict(),
                             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                             "scaler": scaler.state_dict(), "state": state}, resume_path)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, model)
            if recipe["patience"] and state["since_best"] >= recipe["patience"]:
                print(f"{mode}: early stop, no better validation accuracy for {recipe['patience']} epochs")
                break
    except (torch.OutOfMemoryError, RuntimeError) as err:
        if not isinstance(err, torch.OutOfMemoryError) and "allocate memory" not in str(err):
            raise
        raise UserError(f"out of memory with batch size {recipe['batch_size']}: lower train.{mode}.batch_size "
                        f"(e.g. dvc exp run -S train.{mode}.batch_size={max(1, recipe['batch_size'] // 2)})") from None
    finally:
        writer.close()
    summary = {"best_epoch": state["best"]["epoch"], "best_val_accuracy": state["best"]["val_accuracy"],
               "best_val_loss": state["best"]["val_loss"], "epochs_run": state["epoch"],
               "train_seconds": round(time.time() - started, 1)}
    (metrics_dir / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    resume_path.unlink(missing_ok=True)
    return summary


def _checkpoint(model, state, params, prep, classes, mode):
    return {"state_dict": state["best_state"], "arch": params["model"]["arch"], "mode": mode,
            "classes": classes, "preprocessing": prep, "params": params, **{
                f"best_{k}": v for k, v in state["best"].items()}}


def _train_one_epoch(net, loader, criterion, optimizer, scheduler, scaler, device, amp_dtype, grad_clip,
                     channels_last, desc):
    total_loss, correct, seen = 0.0, 0, 0
    tic = time.time()
    bar = tqdm(loader, desc=desc, unit="batch")
    for inputs, targets in bar:
        inputs, targets = _to_device(inputs, device, channels_last), targets.to(device, non_blocking=True)
        with torch.autocast(device, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = net(inputs)
            loss = criterion(logits.float(), targets)
        if not torch.isfinite(loss):
            raise UserError(f"the loss became {loss.item()} ({desc}, after {seen} images): lower the learning "
                            "rate, enable train.*.grad_clip, or use precision bf16/fp32 instead of fp16")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        n = targets.size(0)
        total_loss += loss.item() * n
        correct += (logits.argmax(1) == targets).sum().item()
        seen += n
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", img_s=f"{seen / (time.time() - tic):.1f}")
    return total_loss / seen, correct / seen, seen


def _log(writer, row):
    epoch = row["epoch"]
    for split in ("train", "val"):
        writer.add_scalar(f"loss/{split}", row[f"{split}_loss"], epoch)
        writer.add_scalar(f"accuracy/{split}", row[f"{split}_accuracy"], epoch)
    for key, value in row.items():
        if key.startswith("lr_"):
            writer.add_scalar(f"lr/{key[3:]}", value, epoch)
    writer.add_scalar("time/epoch_seconds", row["epoch_seconds"], epoch)
    writer.add_scalar("time/images_per_second", row["images_per_second"], epoch)
    writer.flush()
