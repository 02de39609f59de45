import copy
import csv
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision

from caltech_transfer.core.errors import UserError
from caltech_transfer.model.factory import build_model
from caltech_transfer.train import engine
from caltech_transfer.train.mixing import BatchMixer
from caltech_transfer.train.modes import param_groups
from caltech_transfer.train.runtime import autocast_dtype, glibc, resolve_device
from conftest import LEARNS, data_paths, stage_params


def run(mode, data, out, on_epoch_end=None, weights="none", **overrides):
    params = stage_params(f"train_{mode}", **overrides)
    paths = data_paths(data, out, mode, params, weights)
    summary = engine.train(mode, params, paths, on_epoch_end=on_epoch_end)
    return summary, torch.load(out / f"{mode}.pt", weights_only=True)


def history(out):
    with open(out / "metrics" / "history.tsv") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def test_trainable_parameters_of_each_mode():
    t = {"finetune_lr": 2e-4, "head_lr": 3e-3, "scratch_lr": 0.05, "feature_extract_lr": 7e-3}
    model, _ = build_model("resnet18", 3)
    groups = param_groups("finetune", model, t)
    assert [(g["name"], g["lr"]) for g in groups] == [("backbone", 2e-4), ("head", 3e-3)]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.head.parameters()}

    model, _ = build_model("resnet18", 3)
    groups = param_groups("feature_extract", model, t)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in model.head.parameters()}
    assert [(g["name"], g["lr"]) for g in groups] == [("head", 7e-3)]

    model, _ = build_model("resnet18", 3)
    groups = param_groups("scratch", model, t)
    assert {g["lr"] for g in groups} == {0.05} and all(p.requires_grad for p in model.parameters())
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


@pytest.mark.parametrize("augment", [False, True])
def test_feature_extract_leaves_the_backbone_and_its_batchnorm_untouched(small_dataset, tmp_path, augment):
    torch.manual_seed(1)
    pretrained = torchvision.models.resnet18().state_dict()
    torch.save(pretrained, tmp_path / "pretrained.pth")
    torch.manual_seed(0)  # the run's train.seed: the same fresh head as the run starts from
    initial_head = build_model("resnet18", 3)[0].head.weight.detach().clone()
    summary, ckpt = run(
        "feature_extract",
        small_dataset,
        tmp_path,
        weights=str(tmp_path / "pretrained.pth"),
        **{
            "train.feature_extract.epochs": 2,
            "train.feature_extract.augment": augment,
        },
    )
    backbone = {k: v for k, v in pretrained.items() if not k.startswith("fc.")}
    assert any(k.endswith("running_mean") for k in backbone)
    for key, value in backbone.items():  # weights and BatchNorm running statistics alike
        assert torch.equal(ckpt["state_dict"][f"backbone.{key}"], value), key
    assert not torch.equal(ckpt["state_dict"]["head.weight"], initial_head)  # while the head did train


def test_short_finetune_really_learns(small_dataset, tmp_path):
    summary, ckpt = run("finetune", small_dataset, tmp_path, **LEARNS)
    assert summary["best_val_accuracy"] >= 0.9  # chance is 1/3
    rows = history(tmp_path)
    assert [int(r["epoch"]) for r in rows] == list(range(1, LEARNS["train.finetune.epochs"] + 1))
    # cosine from 1e-3: the first epoch starts at the full rate, later ones lower, never below 0
    lrs = [float(r["lr_backbone"]) for r in rows]
    assert lrs[0] == pytest.approx(1e-3) and all(a > b > 0 for a, b in zip(lrs, lrs[1:]))
    assert ckpt["classes"] == ["class_00", "class_01", "class_02"] and ckpt["arch"] == "resnet18"
    assert list((tmp_path / "logs").glob("events.out.tfevents.*"))
    assert not (tmp_path / "finetune.resume.pt").exists()


def test_two_phase_finetune_trains_the_head_alone_first(small_dataset, tmp_path):
    pretrained = torchvision.models.resnet18().state_dict()
    torch.save(pretrained, tmp_path / "pretrained.pth")
    backbones = {}
    run(
        "finetune",
        small_dataset,
        tmp_path,
        lambda e, m: backbones.update({e: copy.deepcopy(m.backbone.state_dict())}),
        weights=str(tmp_path / "pretrained.pth"),
        **{
            "train.finetune.freeze_epochs": 1,
            "train.finetune.epochs": 2,
            "train.finetune.batch_size": 12,
        },
    )
    assert all(torch.equal(backbones[1][k], pretrained[k]) for k in backbones[1])  # BatchNorm statistics too
    assert not torch.equal(backbones[2]["conv1.weight"], pretrained["conv1.weight"])


def test_checkpoint_holds_the_best_validation_epoch_not_the_last(small_dataset, tmp_path):
    snapshots = {}

    def sabotage_last_epoch(epoch, model):
        snapshots[epoch] = copy.deepcopy(model.state_dict())
        if epoch == 2:  # from here on the model predicts the reverse of what it learned
            with torch.no_grad():
                model.head.weight.mul_(-10)
                model.head.bias.mul_(-10)

    summary, ckpt = run(
        "finetune",
        small_dataset,
        tmp_path,
        on_epoch_end=sabotage_last_epoch,
        **{
            "train.finetune.epochs": 3,
            "train.finetune_lr": 0.0,
            "train.head_lr": 3e-3,
            "train.finetune.scheduler": "none",
            "train.finetune.batch_size": 12,
        },
    )
    rows = history(tmp_path)
    accuracies = [float(r["val_accuracy"]) for r in rows]
    assert accuracies[2] < max(accuracies[:2])
    ranks = [(accuracy, -float(r["val_loss"])) for accuracy, r in zip(accuracies, rows)]  # ties: the lower loss
    best = ckpt["best_epoch"]
    assert best == 1 + ranks.index(max(ranks)) and best != 3
    for key, value in snapshots[best].items():
        assert torch.equal(ckpt["state_dict"][key], value), key
    assert not torch.equal(ckpt["state_dict"]["head.weight"], snapshots[3]["head.weight"])


def test_a_final_fit_trains_on_train_and_val_and_keeps_the_last_epoch(small_dataset, tmp_path, monkeypatch):
    import caltech_transfer.train.modes as modes_module

    read = []
    real_images = modes_module.CachedImages

    def spy(*args, **kwargs):
        images = real_images(*args, **kwargs)
        read.append((args[2], len(images)))
        return images

    monkeypatch.setattr(modes_module, "CachedImages", spy)
    snapshots = {}

    def sabotage_last_epoch(epoch, model):  # the last epoch starts from a broken head and is kept all the same
        snapshots[epoch] = copy.deepcopy(model.state_dict())
        if epoch == 1:
            with torch.no_grad():
                model.head.weight.mul_(-10)

    settings = {"train.final_fit": True, "train.finetune.epochs": 2, "train.finetune.batch_size": 12}
    summary, ckpt = run("finetune", small_dataset, tmp_path, on_epoch_end=sabotage_last_epoch, **settings)
    assert read == [(("train", "val"), 36)]  # 8 + 4 of each of 3 classes; no validation images read apart
    assert "val_accuracy" not in history(tmp_path)[0] and "best_val_accuracy" not in summary
    assert summary["best_epoch"] == ckpt["best_epoch"] == 2
    assert all(torch.equal(ckpt["state_dict"][k], v) for k, v in snapshots[2].items())
    assert not torch.equal(ckpt["state_dict"]["head.weight"], snapshots[1]["head.weight"])
    with pytest.raises(UserError, match="train.finetune.patience stops on validation, which train.final_fit"):
        run("finetune", small_dataset, tmp_path, **settings, **{"train.finetune.patience": 1})


def test_interrupted_run_resumes_to_the_same_weights(small_dataset, tmp_path):
    settings = {"train.scratch.epochs": 3, "train.scratch.batch_size": 8, "train.scratch_lr": 0.05}
    final = {}
    run(
        "scratch",
        small_dataset,
        tmp_path / "straight",
        lambda e, m: final.update(straight=copy.deepcopy(m.state_dict())),
        **settings,
    )

    def crash_after_first_epoch(epoch, model):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run("scratch", small_dataset, tmp_path / "resumed", crash_after_first_epoch, **settings)
    assert (tmp_path / "resumed" / "scratch.resume.pt").exists()
    epochs_seen = []

    def keep(epoch, model):
        epochs_seen.append(epoch)
        final["resumed"] = copy.deepcopy(model.state_dict())

    run("scratch", small_dataset, tmp_path / "resumed", keep, **settings)
    assert epochs_seen == [2, 3]
    for key, value in final["straight"].items():
        assert torch.equal(final["resumed"][key], value), key
    assert learning_curves(tmp_path / "straight") == learning_curves(tmp_path / "resumed")


def test_loader_processes_change_no_draw_and_a_resumed_run_is_the_uninterrupted_one(small_dataset, tmp_path):
    """Every draw of training is a function of (train.seed, epoch, image): crops, flips and TrivialAugment in loader
    processes that persist across epochs as in the main process, mixup and dropout unmoved by the loader."""
    settings = {
        "train.scratch.epochs": 3,
        "train.scratch.batch_size": 8,
        "train.scratch.auto_augment": "trivial",
        "train.scratch.mixup_alpha": 0.2,
    }

    def crash_after_first_epoch(epoch, model):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run("scratch", small_dataset, tmp_path / "resumed", crash_after_first_epoch, **settings, **{"train.workers": 2})
    weights = {
        name: run("scratch", small_dataset, tmp_path / name, **settings, **{"train.workers": workers})[1]["state_dict"]
        for name, workers in (("resumed", 2), ("two workers", 2), ("no workers", 0))
    }
    for key, value in weights["no workers"].items():
        assert torch.equal(weights["two workers"][key], value), key
        assert torch.equal(weights["resumed"][key], value), key


def crash_after_first_epoch(epoch, model):
    if epoch == 1:
        raise KeyboardInterrupt


def test_a_resume_state_is_used_only_by_its_own_run(small_dataset, tmp_path):
    """After an interruption, other cached pixels (cache.fit: crop) or another starting head (a retrained
    feature_extract checkpoint) make another run: it starts over instead of resuming the old one's state."""
    from caltech_transfer.data.cache import build_cache

    data = tmp_path / "data"
    shutil.copytree(small_dataset / "split", data / "split")
    shutil.copytree(small_dataset / "cache", data / "cache")
    head = {"train.feature_extract.epochs": 1}
    run("feature_extract", data, tmp_path / "models", **head)
    settings = {
        "train.finetune.epochs": 2,
        "train.finetune.batch_size": 8,
        "train.finetune.init_head": "feature_extract",
    }
    epochs = []

    def record(epoch, model):
        epochs.append(epoch)

    for change in ("the starting head", "the cached pixels"):
        with pytest.raises(KeyboardInterrupt):
            run("finetune", data, tmp_path / "models", crash_after_first_epoch, **settings)
        if change == "the starting head":
            run("feature_extract", data, tmp_path / "models", **head, **{"train.feature_extract_lr": 0.01})
        else:
            build_cache(small_dataset / "raw" / "101_ObjectCategories", data / "cache", 40, "crop", 1)
        epochs.clear()
        run("finetune", data, tmp_path / "models", record, **settings)
        assert epochs == [1, 2], change


def learning_curves(out):
    timing = ("epoch_seconds", "images_per_second")
    return [{k: v for k, v in row.items() if k not in timing} for row in history(out)]


def test_nan_loss_stops_with_a_message(small_dataset, tmp_path):
    with pytest.raises(UserError, match="the loss became (nan|inf).*lower the learning rate"):
        run(
            "scratch",
            small_dataset,
            tmp_path,
            **{
                "train.scratch_lr": 1e30,
                "train.scratch.epochs": 2,
                "train.scratch.optimizer": "sgd",
                "train.scratch.batch_size": 8,
            },
        )


def test_cuda_without_a_gpu_is_refused():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(UserError, match="no GPU"):
        resolve_device("cuda")


def test_auto_precision_is_fp32_on_every_cpu_and_fp16_is_refused_there():
    assert autocast_dtype("auto", "cpu") is None  # whatever the CPU: the committed results are fp32
    assert autocast_dtype("bf16", "cpu") is torch.bfloat16
    with pytest.raises(UserError, match="fp16 needs CUDA"):
        autocast_dtype("fp16", "cpu")


@pytest.mark.parametrize("native, dtype", [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_precision_on_a_gpu_takes_bf16_only_where_it_is_native(monkeypatch, native, dtype):
    """torch counts emulated bf16 (T4, V100) as supported unless asked not to; there auto is fp16 with the scaler."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation or native)
    assert autocast_dtype("auto", "cuda") is dtype


def test_schedules():
    recipe = {"epochs": 2, "warmup_steps": 2, "scheduler": "cosine", "min_lr": 0.1, "gamma": 0.5, "step_size": 1}
    factor = engine.lr_factor(recipe, steps_per_epoch=5, base_lr=1.0)
    assert [round(factor(s), 3) for s in (0, 1, 2, 10)] == [0.5, 1.0, 1.0, 0.1]
    step = engine.lr_factor({**recipe, "scheduler": "step", "warmup_steps": 0}, 5, 1.0)
    assert [step(s) for s in (0, 4, 5, 9)] == [1.0, 1.0, 0.5, 0.5]


def test_lp_ft_starts_from_the_feature_extract_head(small_dataset, tmp_path):
    run("feature_extract", small_dataset, tmp_path, **{"train.feature_extract.epochs": 2})
    probe = torch.load(tmp_path / "feature_extract.pt", weights_only=True)["state_dict"]
    # learning rates 0: the finetune checkpoint holds exactly the weights it started from
    _, ckpt = run(
        "finetune",
        small_dataset,
        tmp_path,
        **{
            "train.finetune.init_head": "feature_extract",
            "train.finetune.epochs": 1,
            "train.finetune_lr": 0.0,
            "train.head_lr": 0.0,
            "train.finetune.batch_size": 12,
        },
    )
    for key in ("head.weight", "head.bias"):
        assert torch.equal(ckpt["state_dict"][key], probe[key]), key
    with pytest.raises(
        UserError, match="init_head: feature_extract needs .*feature_extract.pt trained with the same model"
    ):
        run(
            "finetune",
            small_dataset,
            tmp_path,
            **{"train.finetune.init_head": "feature_extract", "model.input_size": 40},
        )


def test_the_training_loop_waits_for_the_device_only_every_few_steps(monkeypatch):
    from torch.utils.data import DataLoader, TensorDataset

    from caltech_transfer.train.runtime import Runtime

    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(torch.randn(96, 8), torch.randint(0, 3, (96,))), batch_size=2)  # 48 steps
    net = torch.nn.Linear(8, 3)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    steps = engine.Optimization(
        optimizer,
        scheduler,
        torch.amp.GradScaler("cpu", enabled=False),
        torch.nn.CrossEntropyLoss(),
        grad_clip=0.0,
        mixer=None,
    )
    syncs = []
    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__"):
        real = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor,
            name,
            lambda self, *a, _real=real, _name=name, **k: (syncs.append(_name), _real(self, *a, **k))[1],
        )
    monkeypatch.setattr(engine, "CHECK_EVERY", 10)
    releases = []
    monkeypatch.setattr(Runtime, "release_freed_memory", lambda self: releases.append(1))
    runtime = Runtime({"device": "cpu", "precision": "fp32", "channels_last": False, "compile": False})
    loss, accuracy, seen = engine.train_one_epoch(net, loader, steps, runtime, "sync test")
    assert seen == 96 and 0 < loss < 5 and 0 <= accuracy <= 1
    # the DataLoader draws its seed once per epoch; steps 10, 20, 30, 40 and the last look at the loss once
    # each; the epoch's totals are read once at the end. A bound, not the exact calls, so that a harmless change of
    # the loop passes: a wait per step would add 48 or more.
    assert len(syncs) <= 1 + 5 + 1, syncs
    assert len(releases) == 5  # the heap's free pages go back at each look, where the host waits anyway


@pytest.mark.skipif(not Path("/proc/self/statm").exists() or glibc() is None, reason="needs Linux with glibc")
def test_freed_memory_is_kept_between_steps_and_released_between_phases():
    """keep_freed_memory (no page faults per step) holds freed blocks; release_freed_memory, called between
    training and inference, hands them back, so one phase's blocks don't add to the other's peak."""
    probe = textwrap.dedent("""
        import torch
        from caltech_transfer.train.runtime import keep_freed_memory, release_freed_memory
        def resident(): return int(open("/proc/self/statm").read().split()[1]) * 4096
        assert keep_freed_memory()
        block = torch.ones(256 << 20, dtype=torch.uint8)
        del block
        held = resident()
        release_freed_memory()
        print(held - resident())
    """)
    released = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert int(released) > 200 << 20


def live_steps(out, name="val_accuracy"):
    """The epochs DVCLive's plot file of `name` holds, in order."""
    lines = (out / "metrics" / "train" / "plots" / "metrics" / f"{name}.tsv").read_text().splitlines()
    assert lines[0] == f"step\t{name}"
    return [int(line.split("\t")[0]) for line in lines[1:]]


def test_live_metrics_hold_each_epoch_once_after_a_crash_the_resume_state_missed(small_dataset, tmp_path, monkeypatch):
    """DVCLive writes an epoch before the resume state records it; a crash between the two leaves the live files one
    epoch ahead, and the resumed run still logs every epoch exactly once."""
    settings = {"train.scratch.epochs": 3, "train.scratch.batch_size": 8}
    save = engine.resume.save

    def crash_before_saving_epoch_2(path, run_id, state, *rest):
        if state.epoch == 2:
            raise KeyboardInterrupt
        save(path, run_id, state, *rest)

    monkeypatch.setattr(engine.resume, "save", crash_before_saving_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run("scratch", small_dataset, tmp_path, **settings)
    assert live_steps(tmp_path) == [1, 2]  # epoch 2 logged, the resume state still at epoch 1
    monkeypatch.setattr(engine.resume, "save", save)
    summary, _ = run("scratch", small_dataset, tmp_path, **settings)
    for name in ("train_loss", "val_accuracy", "lr_backbone", "images_per_second"):
        assert live_steps(tmp_path, name) == [1, 2, 3], name
    live = json.loads((tmp_path / "metrics" / "train" / "metrics.json").read_text())
    assert live == {**summary, "step": 3}
    assert set(live) == {
        "step",
        "val_accuracy",
        "best_epoch",
        "best_val_accuracy",
        "train_seconds",
        "optimizer_steps",
        "device",
        "precision",
    }
    assert live["precision"] == "fp32" and live["optimizer_steps"] % 3 == 0  # three epochs of equal batches
    assert live["val_accuracy"] == pytest.approx(float(history(tmp_path)[-1]["val_accuracy"]), abs=1e-6)


def test_mixup_blends_and_cutmix_pastes_the_share_they_report():
    torch.manual_seed(0)
    images = torch.stack([torch.full((3, 16, 16), 10.0 * (i + 1)) for i in range(4)])
    targets = torch.arange(4)
    mixed, mixed_in, keep = BatchMixer(mixup_alpha=0.4, cutmix_alpha=0.0)(images, targets)
    assert 0 < keep < 1 and mixed.dtype == torch.float32
    assert torch.allclose(mixed, keep * images + (1 - keep) * images[mixed_in])  # each image's colour is its label's

    for _ in range(20):
        mixed, mixed_in, keep = BatchMixer(mixup_alpha=0.0, cutmix_alpha=1.0)(images, targets)
        for i in range(4):
            unchanged = (mixed[i] == images[i]).all(0).float().mean().item()
            expected = 1.0 if mixed_in[i] == i else keep
            assert unchanged == pytest.approx(expected), (i, unchanged, keep)
    assert BatchMixer.of({"mixup_alpha": 0.0, "cutmix_alpha": 0.0}) is None and BatchMixer.of({}) is None


def test_trivial_augment_runs_in_the_loader_and_a_mixed_scratch_run_learns(small_dataset, tmp_path):
    summary, _ = run(
        "scratch",
        small_dataset,
        tmp_path,
        **{
            "train.scratch.epochs": 2,
            "train.scratch.batch_size": 8,
            "train.scratch.auto_augment": "trivial",
            "train.scratch.mixup_alpha": 0.2,
            "train.scratch.cutmix_alpha": 1.0,
        },
    )
    assert summary["best_epoch"] in (1, 2) and len(history(tmp_path)) == 2
    with pytest.raises(UserError, match="train.data_path: device has no per-image augmentation"):
        run(
            "scratch",
            small_dataset,
            tmp_path / "device",
            **{"train.scratch.epochs": 1, "train.scratch.auto_augment": "trivial", "train.data_path": "device"},
        )


def test_the_frozen_backbone_runs_once_per_image_whatever_the_seed_count(small_dataset, tmp_path, monkeypatch):
    """The features stage runs the frozen backbone over every cached image once; each split seed's feature
    extraction and its scoring read those features: one seed or three, the backbone sees each image once."""
    from caltech_transfer.core.layout import RunPaths
    from caltech_transfer.data import split
    from caltech_transfer.evaluation.evaluate import evaluate
    from caltech_transfer.model.factory import Classifier
    from conftest import RUNTIME, write_inputs

    seen = []
    real = Classifier.features

    def spy(self, images):
        if images.dtype == torch.uint8:  # a cached image, not the probe of `check_input_size`
            seen.append(len(images))
        return real(self, images)

    monkeypatch.setattr(Classifier, "features", spy)
    params = stage_params("train_feature_extract", **{"train.feature_extract.epochs": 2})
    split_params = {**stage_params("split")["split"], "train_per_class": 12, "val_per_class": 4}
    images = {}
    for seeds in (1, 3):
        seen.clear()
        out = tmp_path / f"{seeds} seeds"
        write_inputs(small_dataset / "cache", out, params)  # the features stage
        for seed in range(seeds):
            split.run(small_dataset / "cache", out / "split" / str(seed), split_params, seed)
            run = out / "seeds" / str(seed)
            paths = RunPaths(
                out / "split" / str(seed),
                small_dataset / "cache",
                out / "pretrained.pt",
                out / "features",
                run / "feature_extract.pt",
                run / "metrics",
                run / "logs",
            )
            engine.train("feature_extract", params, paths)
            evaluate(paths.checkpoint, "feature_extract", paths, RUNTIME, batch_size=8)
        images[seeds] = sum(seen)
    assert images == {1: 54, 3: 54}  # the small dataset's 3 x 18 cached images
