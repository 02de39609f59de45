from caltech_transfer.results import architectures
from caltech_transfer.results.report import architectures_section


def run(arch, top1, lr=0.05, seconds=600.0, seed=0):
    params = {
        "study": {"seeds": [seed, 7]},
        "model": {"arch": arch, "input_size": 256},
        "train": {"seed": 0, "scratch_lr": lr, "scratch": {"epochs": 110, "input_size": 64}},
    }
    metrics = {
        "metrics/scratch/test.json": {"top1_accuracy": top1, "top5_accuracy": 0.9, "mean_per_class_accuracy": top1 / 2},
        "metrics/scratch/train/metrics.json": {"train_seconds": seconds, "device": "CPU X", "precision": "fp32"},
    }
    return params, metrics


def test_the_table_keeps_the_runs_that_differ_only_in_the_network_and_its_recipe(tmp_path):
    workspace = run("timm/tf_efficientnet_lite0", 0.6)
    runs = [
        workspace,
        run("resnet18", 0.5, seconds=1200.0),
        (run("alexnet", 0.6, lr=0.01)[0], workspace[1]),  # did not rerun scratch: the workspace's files again
        run("alexnet", 0.3, lr=0.01),  # the scratch recipe adapted to the network
        run("alexnet", 0.4),
        run("vgg11", 0.7, seed=1),  # scratch on another split: not comparable
    ]
    table = architectures.architectures(runs, workspace[0])
    assert list(table["networks"]) == ["timm/tf_efficientnet_lite0", "resnet18", "alexnet"]
    assert table["networks"]["alexnet"]["top1_accuracy"] == 0.3
    rows = architectures.markdown(table, workspace[0])
    assert "| `resnet18` | 0.5000 | 0.2500 | 20.0 min | CPU X, fp32 | as above |" in rows
    assert "| `alexnet` | 0.3000 | 0.1500 | 10.0 min | CPU X, fp32 | `train.scratch_lr=0.01` |" in rows

    path = tmp_path / "architectures.json"
    architectures.write_json(path, table)
    # a clone without the experiments: the recorded networks join the new runs, for the same params only
    assert list(
        architectures.architectures([workspace], workspace[0], architectures.architectures_for(path, workspace[0]))[
            "networks"
        ]
    ) == [
        "timm/tf_efficientnet_lite0",
        "resnet18",
        "alexnet",
    ]
    assert architectures.architectures_for(path, run("resnet18", 0.0, seed=1)[0]) == {}
    # a new scratch recipe keeps the table, and each network shows how its own recipe differs from it
    new_recipe = run("timm/tf_efficientnet_lite0", 0.0, lr=0.01)[0]
    recorded = architectures.architectures_for(path, new_recipe)
    assert "| `resnet18` | 0.5000 | 0.2500 | 20.0 min | CPU X, fp32 | `train.scratch_lr=0.05` |" in (
        architectures.markdown(recorded, new_recipe)
    )

    section = architectures_section(table, workspace[0], 0)
    assert "dvc exp run -S model.arch=resnet18 train_scratch evaluate_scratch" in section
    assert "dvc exp run -S model.arch=alexnet -S train.scratch_lr=0.01 train_scratch evaluate_scratch" in section
    assert "model.weights=imagenet" in section  # the pretrained rows' command, for where the weights download
    assert "None is recorded" in architectures_section({}, workspace[0], 0)
