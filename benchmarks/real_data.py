"""Real-data figures on this machine: data stages, a no-op `dvc repro`, feature extraction and fine-tuning
of timm's tf_efficientnet_lite0 with the pretrained weights in ../shared. Reports figures; asserts nothing.

    python benchmarks/real_data.py [--finetune-epochs 5] [--workdir /tmp/bench]

It clones the committed project into the work folder and runs the real DVC stages there."""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"


def dvc(repo, *args):
    tic = time.time()
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, text=True, capture_output=True)
    if result.returncode:
        sys.exit(f"dvc {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    ran = [line for line in result.stdout.splitlines() if line.startswith("Running stage")]
    return time.time() - tic, ran


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", default="/tmp/caltech-bench")
    parser.add_argument("--finetune-epochs", type=int, default=5)
    args = parser.parse_args()
    repo = Path(args.workdir) / "repo"
    if not repo.exists():
        subprocess.run(["git", "clone", "-q", str(PROJECT), str(repo)], check=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["download"].update(
        source=str(SHARED / "datasets" / "caltech-101.zip"),
        checksum="md5:f527068f45fe3f63acd224f9143196bd",
        inner_checksum="md5:48d74becb160adb15c07c2376cebfd14",
    )
    params["model"].update(
        arch="timm/tf_efficientnet_lite0", weights=str(SHARED / "weights" / "tf_efficientnet_lite0_in1k.pth")
    )
    params["train"]["finetune"]["epochs"] = args.finetune_epochs
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    seconds, ran = dvc(repo, "repro", "split")
    print(f"data stages (download, split): {seconds:.1f} s, ran {len(ran)} stages")
    seconds, ran = dvc(repo, "repro", "split")
    print(f"second dvc repro of the data stages: {seconds:.1f} s, ran {len(ran)} stages")
    for stage in ("train_feature_extract", "train_finetune"):
        seconds, _ = dvc(repo, "repro", "--single-item", stage)
        mode = stage.removeprefix("train_")
        summary = json.loads((repo / "metrics" / mode / "train" / "metrics.json").read_text())
        print(
            f"{stage}: {seconds / 60:.1f} min, best val accuracy {summary['best_val_accuracy']:.4f} "
            f"at epoch {summary['best_epoch']} of {summary['step']}"
        )
    seconds, _ = dvc(repo, "repro", "--single-item", "evaluate@finetune")
    test = json.loads((repo / "metrics" / "finetune" / "test.json").read_text())
    print(
        f"evaluate@finetune: {seconds:.0f} s, test top-1 {test['top1_accuracy']:.4f}, "
        f"mean per-class {test['mean_per_class_accuracy']:.4f}"
    )


if __name__ == "__main__":
    main()
