"""Training and evaluation speed, three ways, in one process on the same model and images:

1. seeds: the way the projects this one replaces train: PIL decode and torchvision transforms per sample every
   epoch, fp32, 2 loader workers, a plain loop that reads the loss every step;
2. project: this project's path exactly as the stages run it (the cache, `modes.loaders`, `engine.train_one_epoch`,
   `Runtime.infer`, with the project's params.yaml for augmentation, workers, precision and data path);
3. compute: the same model, precision and memory format on random tensors already on the device (the limit);
4. data: the project's data path alone, its batches moved to the device and no network: the headroom it leaves.

    python benchmarks/speed.py [--arch resnet18] [--size 224] [--batch 32] [--steps 6] [--repeats 2] [--device auto]

Prints a table and writes benchmarks/results/speed-<device>.json. Reports figures; asserts nothing."""

import argparse
import json
import platform
import resource
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from caltech_transfer.batches.datasets import CachedImages, eval_batches, eval_transform
from caltech_transfer.batches.device_batches import DeviceBatches
from caltech_transfer.core.layout import RunPaths
from caltech_transfer.core.params import load_params
from caltech_transfer.data import split
from caltech_transfer.data.cache import build_cache
from caltech_transfer.data.images import load_rgb
from caltech_transfer.model.factory import build_model
from caltech_transfer.train.engine import Optimization, train_one_epoch
from caltech_transfer.train.modes import loaders
from caltech_transfer.train.runtime import Runtime, resolve_device

PROJECT = Path(__file__).resolve().parents[1]
ARCHIVE = PROJECT.parent / "shared" / "datasets" / "caltech-101.zip"
SMALLEST_CLASS = 31  # images in Caltech-101's smallest class (inline_skate)


def cpu_has_fast_bf16():
    """True when oneDNN runs bf16 natively (AVX512-BF16 / AMX): results of the two CPU kinds are kept apart."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def images_folder(workdir, per_class, archive):
    """101_ObjectCategories with `per_class` images of each class, from the Caltech-101 zip."""
    root = workdir / "101_ObjectCategories"
    if root.exists():
        return root
    if not archive.exists():
        sys.exit(f"{archive} not found: the benchmark uses the real Caltech-101 images (--archive)")
    with zipfile.ZipFile(archive) as zf, zf.open("caltech-101/101_ObjectCategories.tar.gz") as inner:
        import tarfile

        with tarfile.open(fileobj=inner, mode="r|gz") as tf:
            counts = {}
            for member in tf:
                parts = Path(member.name).parts
                if (
                    member.isfile()
                    and len(parts) == 3
                    and parts[1] != "BACKGROUND_Google"
                    and parts[2].endswith(".jpg")
                    and counts.get(parts[1], 0) < per_class
                ):
                    counts[parts[1]] = counts.get(parts[1], 0) + 1
                    tf.extract(member, workdir, filter="data")
    return root


class Files(Dataset):
    """The seeds' dataset: decode the JPEG with PIL and transform it, per sample, every epoch."""

    def __init__(self, rows, root, transform):
        self.rows, self.root, self.transform = rows, root, transform

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        path, _, label = self.rows[i]
        return self.transform(load_rgb(self.root / path)), label


def seeds_way(model, rows, root, batch, device, mean, std, repeats):
    """(train img/s, eval img/s): fp32, per-sample transforms in 2 workers, the loss read every step."""
    normalise = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    train = DataLoader(
        Files(rows, root, v2.Compose([v2.RandomResizedCrop(224), v2.RandomHorizontalFlip(), *normalise])),
        batch,
        shuffle=True,
        num_workers=2,
    )
    test = DataLoader(
        Files(rows, root, v2.Compose([v2.Resize(256), v2.CenterCrop(224), *normalise])), batch, num_workers=2
    )
    model = nn.Sequential(model.backbone, model.head).to(device)  # inputs come normalised, fp32, NCHW
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    criterion = nn.CrossEntropyLoss()

    def train_epoch():
        model.train()
        for inputs, labels in train:
            inputs, labels = inputs.to(device), labels.to(device)
            loss = criterion(model(inputs), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()

    def eval_epoch():
        model.eval()
        with torch.no_grad():
            for inputs, _ in test:
                model(inputs.to(device)).argmax(1).cpu()

    return timed(train_epoch, len(rows), device, repeats), timed(eval_epoch, len(rows), device, repeats)


def project_way(model, prep, params, paths, batch, runtime, eval_workers, repeats):
    """((train img/s, eval img/s), data path, (train img/s, eval img/s) of the data path alone) through the project's
    own loaders, loop and inference, as the train and evaluate stages run them."""
    params["train"]["finetune"]["batch_size"] = batch
    runtime.place(model)
    learner, train, _ = loaders("finetune", model, prep, params, paths, runtime, torch.Generator())
    evaluated = CachedImages(paths.cache, paths.split, "train", eval_transform(prep))
    test = eval_batches(evaluated, prep, batch, eval_workers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    scaler = torch.amp.GradScaler(runtime.device, enabled=runtime.amp_dtype == torch.float16)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    steps = Optimization(optimizer, scheduler, scaler, criterion, grad_clip=0.0, mixer=None)
    count = len(evaluated)

    def train_epoch():
        train_one_epoch(learner, train, steps, runtime, "project train")

    def eval_epoch():  # as the evaluate stage: features on the device, the head on the CPU
        model.eval()
        features, _ = runtime.infer(model.features, test, "project eval")
        model.head.float().cpu()(features)
        model.head.to(runtime.device)

    def delivered(batches):
        def data_epoch():
            for inputs, _ in batches:
                runtime.to_device(inputs)

        data_epoch.__qualname__ = f"data {'train' if batches is train else 'eval'}"
        return timed(data_epoch, count, runtime.device, repeats)

    path = "device" if isinstance(train, DeviceBatches) else "loader"
    speeds = timed(train_epoch, count, runtime.device, repeats), timed(eval_epoch, count, runtime.device, repeats)
    return speeds, path, (delivered(train), delivered(test))


def compute_only(model, size, batch, steps, runtime, repeats):
    """(train img/s, eval img/s) on random tensors already on the device: the hardware's limit for this model."""
    runtime.place(model)
    inputs = runtime.to_device(torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8).float())
    labels = torch.randint(0, 101, (batch,), device=runtime.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)

    def train_epoch():
        model.train()
        for _ in range(steps):
            with runtime.autocast():
                loss = criterion(model(inputs).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        loss.item()

    def eval_epoch():
        model.eval()
        with torch.inference_mode(), runtime.autocast():
            outputs = [model(inputs).float() for _ in range(steps)]
        torch.cat(outputs).cpu()

    images = steps * batch
    return timed(train_epoch, images, runtime.device, repeats), timed(eval_epoch, images, runtime.device, repeats)


WARM_UP = {}  # seconds of each first run: worker start-up, kernel selection, torch.compile


def timed(epoch, images, device, repeats):
    """Images per second of the fastest of `repeats` runs of `epoch` after a first run that warms up workers, caches
    and kernels. The fastest, because on a shared machine other work only ever slows a run down."""
    seconds = []
    for _ in range(1 + repeats):
        tic = time.perf_counter()
        epoch()
        synchronise(device)
        seconds.append(time.perf_counter() - tic)
    WARM_UP[epoch.__qualname__] = round(seconds[0], 1)
    return images / min(seconds[1:])


def synchronise(device):
    if device == "cuda":
        torch.cuda.synchronize()


def peak_memory_gb(device):
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


def cpu_name():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6, help="batches per timed epoch")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each epoch; the fastest counts")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--data-path",
        default=None,
        choices=["auto", "loader", "device"],
        help="the project's train.data_path (default: params.yaml's)",
    )
    parser.add_argument("--compile", action="store_true", help="the project path with runtime.compile")
    parser.add_argument(
        "--eval-workers",
        type=int,
        default=None,
        help="evaluate.workers (default: params.yaml's); on the CPU the stages use none",
    )
    parser.add_argument("--archive", type=Path, default=ARCHIVE, help="the Caltech-101 zip (default: ../shared's)")
    parser.add_argument("--workdir", default=None, help="keeps the extracted images and cache between runs")
    parser.add_argument(
        "--out", default=None, help="JSON file (default: benchmarks/results/, named by device, CPU kind and data path)"
    )
    return parser.parse_args()


def prepare_images(args, workdir):
    """(images folder, run paths, training rows, number of classes) of a small split of the real images, enough
    for --steps batches per epoch, cached and split as the cache and split stages do."""
    per_class = -(-args.batch * args.steps // 101)
    if per_class + 3 > SMALLEST_CLASS:  # the split holds per_class + 1 training images and 2 more of each class
        sys.exit(
            f"--steps {args.steps} at --batch {args.batch} needs {per_class + 3} images of each class; the smallest "
            f"Caltech-101 class has {SMALLEST_CLASS}: use at most --steps {(SMALLEST_CLASS - 3) * 101 // args.batch}"
        )
    workdir = workdir / f"{per_class + 3}-per-class"  # a --workdir kept between runs of other sizes holds each apart
    root = images_folder(workdir, per_class + 3, args.archive)
    unused = workdir / "unused.pt"  # no checkpoint is written, and the network is built here
    paths = RunPaths(
        workdir / "split", workdir / "cache", unused, unused, unused, workdir / "metrics", workdir / "logs"
    )
    split_params = {
        "scheme": "standard",
        "train_per_class": per_class + 1,
        "val_per_class": 1,
        "test_per_class": 1,
        "ratios": [0.8, 0.1, 0.1],
        "include_background": False,
    }
    if not (paths.cache / "meta.json").exists():
        build_cache(root, paths.cache, 256, "pad", workers=2)
        split.run(paths.cache, paths.split, split_params, 0)
    train_rows = split.read_manifest(paths.split / "train.csv")
    classes = len(split.read_classes(paths.split))
    return root, paths, train_rows, classes


def print_table(args, report, results, runtime):
    print(
        f"{args.arch} {args.size}px batch {args.batch} on {report['device_name']} ({runtime.device}, "
        f"project precision {report['project_precision']}, native bf16: {report['cpu_native_bf16']})"
    )
    print(f"{'way':<10}{'train img/s':>14}{'eval img/s':>14}")
    for way, (t, e) in results.items():
        print(f"{way:<10}{t:>14.1f}{e:>14.1f}")
    print(
        f"project / seeds: train {report['project_vs_seeds']['train']:.2f}x, "
        f"eval {report['project_vs_seeds']['eval']:.2f}x; "
        f"project / compute: train {report['project_vs_compute']['train']:.0%}, "
        f"eval {report['project_vs_compute']['eval']:.0%}"
    )


def summary(args, results, runtime, images_per_epoch, data_path, params, eval_workers, seeds_peak):
    """The benchmark's JSON record: the machine, the settings of the project path, and each way's images per second."""
    return {
        "arch": args.arch,
        "size": args.size,
        "batch": args.batch,
        "images_per_epoch": images_per_epoch,
        "device": runtime.device,
        "device_name": torch.cuda.get_device_name() if runtime.device == "cuda" else cpu_name(),
        "cpu_native_bf16": cpu_has_fast_bf16(),
        "threads": torch.get_num_threads(),
        "project_precision": str(runtime.amp_dtype or torch.float32).removeprefix("torch."),
        "project_data_path": data_path,
        "project_loader_workers": params["train"]["workers"],
        "project_eval_workers": eval_workers,
        "project_channels_last": runtime.channels_last,
        "torch": torch.__version__,
        "images_per_second": {way: {"train": round(t, 2), "eval": round(e, 2)} for way, (t, e) in results.items()},
        "project_vs_seeds": {
            k: round(results["project"][i] / results["seeds"][i], 3) for i, k in enumerate(("train", "eval"))
        },
        "project_vs_compute": {
            k: round(results["project"][i] / results["compute"][i], 3) for i, k in enumerate(("train", "eval"))
        },
        "peak_memory_gb": {"seeds": round(seeds_peak, 2), "all": round(peak_memory_gb(runtime.device), 2)},
        "first_run_seconds": WARM_UP,
        "timed_runs": args.repeats,
        "project_compiled": args.compile,
    }


def main():
    args = parse_args()

    params = load_params("train_finetune", PROJECT)
    params["runtime"].update(device=args.device, compile=args.compile)
    params["train"]["data_path"] = args.data_path or params["train"]["data_path"]
    device = resolve_device(args.device)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="caltech-speed-"))
    workdir.mkdir(parents=True, exist_ok=True)
    root, paths, train_rows, classes = prepare_images(args, workdir)

    def fresh_model():
        torch.manual_seed(0)
        model, prep = build_model(args.arch, classes, input_size=args.size)
        return model, prep

    model, prep = fresh_model()
    results = {"seeds": seeds_way(model, train_rows, root, args.batch, device, prep["mean"], prep["std"], args.repeats)}
    seeds_peak = peak_memory_gb(device)
    runtime = Runtime(params["runtime"])  # after the seeds' way: on a CPU it also tunes the allocator for the process
    eval_workers = runtime.inference_workers(  # as the evaluate stage: none on the CPU
        load_params("evaluate@finetune", PROJECT)["evaluate"]["workers"]
        if args.eval_workers is None
        else args.eval_workers
    )
    results["project"], data_path, data_only = project_way(
        *fresh_model(), params, paths, args.batch, runtime, eval_workers, args.repeats
    )
    results["compute"] = compute_only(fresh_model()[0], args.size, args.batch, args.steps, runtime, args.repeats)
    results["data"] = data_only
    report = summary(args, results, runtime, len(train_rows), data_path, params, eval_workers, seeds_peak)
    print_table(args, report, results, runtime)
    cpu_kind = "-native-bf16" if runtime.device == "cpu" and cpu_has_fast_bf16() else ""  # CPU kinds kept apart
    name = f"speed-{runtime.device}{cpu_kind}-{data_path}" + ("-compiled" if args.compile else "")
    out = Path(args.out or PROJECT / "benchmarks" / "results" / f"{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    if not args.workdir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
