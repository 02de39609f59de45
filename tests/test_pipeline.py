"""End to end: the real dvc.yaml in a fresh temporary copy of the repository, on synthetic data, on CPU."""

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torchvision
import yaml

from caltech_transfer.core.files import read_csv
from caltech_transfer.core.params import read_yaml, set_dotted
from conftest import PROJECT, make_tree

SETTINGS = {
    "download.checksum": "",
    "download.inner_checksum": "",
    "split.train_per_class": 12,
    "split.val_per_class": 4,
    "cache.image_size": 40,
    "model.input_size": 32,
    "runtime.precision": "fp32",
    "train.workers": 0,
    "runtime.channels_last": False,
    "train.finetune.epochs": 2,
    "train.finetune.batch_size": 8,
    "train.finetune.scheduler": "none",
    "train.scratch.epochs": 2,
    "train.scratch.batch_size": 8,
    "train.feature_extract.epochs": 2,
    "train.feature_extract.batch_size": 8,
    "evaluate.batch_size": 16,
    "plot.embedding": "pca",
    "plot.embedding_points": 100,
    "plot.mistakes": 4,
    "study.seeds": [0, 1],
    "curve.seeds": [0, 1],
}


SEEDS = (0, 1)
CURVE = {f"curve@{k}-{seed}" for k in (2, 4) for seed in SEEDS}  # the tests' curve.shots and curve.seeds
LADDER_FE = {f"ladder_feature_extract@wide-{seed}" for seed in SEEDS}  # the tests' one rung, `wide`
LADDER = {"ladder_pretrained@wide", "ladder_features@wide", *LADDER_FE, "ladder_finetune@wide", "ladder"}
STUDY = ("feature_extract", "finetune")
EVALUATE = {f"evaluate@{seed}-{mode}" for seed in SEEDS for mode in STUDY}


def per_seed(stage):
    return {f"{stage}@{seed}" for seed in SEEDS}


def run_folder(repo, mode, seed=0):
    return repo / "metrics" / ("scratch" if mode == "scratch" else f"seeds/{seed}/{mode}")


def environment():
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }


def sh(repo, *args, check=True):
    result = subprocess.run(args, cwd=repo, env=environment(), capture_output=True, text=True)
    if check and result.returncode:
        pytest.fail(f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def dvc(repo, *args, check=True):
    return sh(repo, sys.executable, "-m", "dvc", *args, check=check)


def ran(output):
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A fresh copy of the committed project, pointed at synthetic data and small settings."""
    root = tmp_path_factory.mktemp("pipeline")
    repo = root / "repo"
    files = subprocess.run(["git", "ls-files"], cwd=PROJECT, capture_output=True, text=True, check=True).stdout.split()
    for name in files + ["params.yaml", "dvc.yaml"]:
        if (PROJECT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT / name, repo / name)
    tree = make_tree(root / "source", per_class=(18, 18, 18), background=3, extras=True)
    torch.save(torchvision.models.resnet18().state_dict(), root / "pretrained.pth")
    params = read_yaml(Path(__file__).with_name("params.yaml"))  # the tests' own params, not the tuned defaults
    for dotted, value in {
        **SETTINGS,
        "download.source": str(tree.parent),
        "model.weights": str(root / "pretrained.pth"),
    }.items():
        set_dotted(params, dotted, value)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(repo, "git", "init", "-q")
    if not (repo / ".dvc").exists():
        dvc(repo, "init", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "synthetic setup")
    return repo


def test_repro_runs_every_stage_then_nothing(repo):
    first = dvc(repo, "repro")
    assert ran(first.stdout) == {
        "download",
        "cache",
        *per_seed("split"),
        "pretrained",
        "features",
        *per_seed("train_feature_extract"),
        *per_seed("train_finetune"),
        *EVALUATE,
        "seeds",
        "train_scratch",
        "evaluate_scratch",
        "plot",
        *CURVE,
        *LADDER,
        "report",
    }
    second = dvc(repo, "repro")
    assert ran(second.stdout) == set()
    assert "Data and pipelines are up to date" in second.stdout
    for seed in SEEDS:
        summary = json.loads((repo / "data" / "split" / str(seed) / "summary.json").read_text())
        assert (summary["classes"], summary["train"], summary["val"]) == (3, 24, 12)
    assert (repo / "data" / "split" / "0" / "train.csv").read_text() != (repo / "data/split/1/train.csv").read_text()
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-qm", "baseline run")


def test_the_report_quotes_the_metrics_files(repo):
    """Every number of report.md's results and learning-curve tables equals the metrics file it came from."""
    report = (repo / "report.md").read_text().splitlines()
    for mode in ("finetune", "scratch", "feature_extract"):
        test = json.loads((run_folder(repo, mode) / "test.json").read_text())
        train = json.loads((run_folder(repo, mode) / "train" / "metrics.json").read_text())
        cells = [c.strip() for c in next(line for line in report if line.startswith(f"| {mode} |")).split("|")]
        assert [float(c) for c in cells[2:5]] == [
            round(test[k], 4) for k in ("top1_accuracy", "top5_accuracy", "mean_per_class_accuracy")
        ]
        assert cells[5] == f"{train['best_epoch']} ({train['best_val_accuracy']:.3f})"  # tests: no final fit
        assert cells[7] == f"{train['device']}, {train['precision']}" and train["precision"] == "fp32"
    curve = read_csv(repo / "report" / "learning_curve.tsv", "\t")
    assert [int(r["images_per_class"]) for r in curve] == [2, 4]  # curve.shots
    for r in curve:
        k = int(r["images_per_class"])
        table_row = [c.strip() for c in next(line for line in report if line.startswith(f"| {k} |")).split("|")]
        for column, mode in ((2, "feature_extract"), (4, "finetune")):
            points = [repo / "metrics" / "curve" / str(seed) / f"k{k}" / mode for seed in SEEDS]
            values = [json.loads((p / "test.json").read_text())["mean_per_class_accuracy"] for p in points]
            assert float(r[mode]) == round(statistics.mean(values), 4)
            assert table_row[column].startswith(f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} [")
            # the same budget of optimizer steps at every k (tests/params.yaml: curve.*_steps), stated in the table
            steps = {json.loads((p / "train" / "metrics.json").read_text())["optimizer_steps"] for p in points}
            assert steps == {{"feature_extract": 6, "finetune": 4}[mode]} and table_row[column + 1] == str(*steps)
    # the seeds stage's table, computed from both seeds' runs
    seeds = json.loads((repo / "metrics" / "seeds.json").read_text())
    assert seeds["seeds"] == [0, 1]
    for mode in STUDY:
        values = [
            json.loads((run_folder(repo, mode, seed) / "test.json").read_text())["top1_accuracy"] for seed in SEEDS
        ]
        assert seeds[mode]["top1_accuracy"]["mean"] == pytest.approx(sum(values) / 2)
        cell = f"{seeds[mode]['top1_accuracy']['mean']:.4f} ± {seeds[mode]['top1_accuracy']['std']:.4f}"
        assert any(line.startswith(f"| {mode} | {cell} [") for line in report), cell
    # the ladder's table: the study's backbone and the rung, each from its own runs
    ladder = json.loads((repo / "metrics" / "ladder.json").read_text())
    assert [row["arch"] for row in ladder["backbones"].values()] == ["resnet18", "resnet34"]
    for folder, row in (
        (repo / "metrics" / "seeds", ladder["backbones"]["study"]),
        (repo / "metrics" / "ladder" / "wide", ladder["backbones"]["wide"]),
    ):
        values = [
            json.loads((folder / str(seed) / "feature_extract" / "test.json").read_text())["mean_per_class_accuracy"]
            for seed in SEEDS
        ]
        assert row["feature_extract"]["mean_per_class_accuracy"]["mean"] == pytest.approx(statistics.mean(values))
        tuned = json.loads((folder / "0" / "finetune" / "test.json").read_text())
        assert row["finetune"]["mean_per_class_accuracy"] == tuned["mean_per_class_accuracy"]
        line = next(line for line in report if line.startswith(f"| `{row['arch']}`"))
        assert f"{statistics.mean(values):.4f} [" in line and f"| {tuned['mean_per_class_accuracy']:.4f} |" in line
    assert ladder["backbones"]["wide"]["parameters"] > ladder["backbones"]["study"]["parameters"] > 11e6
    for line in report:  # every embedded figure exists
        if line.startswith("!["):
            assert (repo / line.split("](")[1].rstrip(")")).is_file(), line


def stale_stages(repo, dotted, value):
    """The stages `dvc status` names after params.yaml's `dotted` is set to `value` (then put back)."""
    original = (repo / "params.yaml").read_text()
    params = read_yaml(repo / "params.yaml")
    set_dotted(params, dotted, value)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        return set(json.loads(dvc(repo, "status", "--json").stdout))
    finally:
        (repo / "params.yaml").write_text(original)


def test_a_param_invalidates_exactly_the_stages_that_read_it(repo):
    # loader processes change no result: only the report, which lists whole sections to describe the recipes
    assert stale_stages(repo, "train.workers", 1) == {"report"}
    assert stale_stages(repo, "evaluate.workers", 1) == {"report"}
    assert stale_stages(repo, "evaluate.batch_size", 8) == {
        "features",
        *EVALUATE,
        "evaluate_scratch",
        *CURVE,
        "ladder_features@wide",
        *LADDER_FE,
        "ladder_finetune@wide",
        "report",
    }
    # and, through their outputs, all after them
    assert stale_stages(repo, "split.train_per_class", 11) == {*per_seed("split"), "report"}
    assert stale_stages(repo, "cache.image_size", 48) == {"cache", "report"}
    # a finetune param: not the scratch and feature_extract stages, nor plot (its metrics are not there yet)
    assert stale_stages(repo, "train.finetune_lr", 0.5) == {
        *per_seed("train_finetune"),
        *CURVE,
        "ladder_finetune@wide",
        "report",
    }
    # one more seed: its own stages, the spread over seeds and the report; no stage of the seeds already run
    assert stale_stages(repo, "study.seeds", [0, 1, 2]) == {
        "split@2",
        "train_feature_extract@2",
        "train_finetune@2",
        "evaluate@2-feature_extract",
        "evaluate@2-finetune",
        "seeds",
        "ladder_feature_extract@wide-2",
        "ladder",
        "report",
    }


def test_the_archive_and_the_weights_elsewhere_rerun_only_the_stages_that_fetch_them(repo, tmp_path):
    """Locations are not results: the same archive and weights at other paths rerun download and pretrained, whose
    outputs are the same bytes, and nothing after them; then DVC finds everything up to date."""
    params = read_yaml(repo / "params.yaml")
    source, weights = Path(params["download"]["source"]), Path(params["model"]["weights"])
    shutil.copytree(source, tmp_path / "elsewhere" / source.name, symlinks=True)
    shutil.copy(weights, tmp_path / "elsewhere.pth")
    set_dotted(params, "download.source", str(tmp_path / "elsewhere" / source.name))
    set_dotted(params, "model.weights", str(tmp_path / "elsewhere.pth"))
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        assert ran(dvc(repo, "repro").stdout) == {"download", "pretrained"}
        assert "Data and pipelines are up to date" in dvc(repo, "status").stdout
    finally:
        sh(repo, "git", "checkout", "params.yaml", "dvc.lock")  # the same outputs, recorded at the first paths


def test_metrics_and_plots_are_declared(repo):
    shown = json.loads(dvc(repo, "metrics", "show", "--json").stdout)
    files = next(iter(shown.values()))["data"]
    assert "mean_per_class_accuracy" in files["metrics/scratch/test.json"]["data"]
    assert "best_val_accuracy" in files["metrics/scratch/train/metrics.json"]["data"]
    assert {"finetune", "feature_extract", "difference"} <= set(files["metrics/seeds.json"]["data"])
    plots = json.loads(dvc(repo, "plots", "show", "--json").stdout)
    names = set(plots.get("data", plots))
    for expected in ("Validation accuracy", "plots/curves.png", "plots/confusion_finetune.png", "plots/embedding.png"):
        assert any(expected in name for name in names), (expected, names)
    table = dvc(repo, "exp", "show", "--csv").stdout.splitlines()
    assert "train.finetune_lr" in table[0] and "mean_per_class_accuracy" in table[0]
    # a table people can read: few metrics, named for people; the deps are the modules each stage runs (exactly,
    # tests/test_structure.py), the data and the models, which `dvc exp show --only-changed` leaves out unless changed
    workspace = json.loads(dvc(repo, "exp", "show", "--json").stdout)[0]["data"]
    values = [v for file in workspace["metrics"].values() for v in file["data"].values()]
    assert len(values) <= 30, len(values)
    assert all(dep.startswith(("src/caltech_transfer/", "data/", "models/", "metrics")) for dep in workspace["deps"])


def test_exp_run_with_finetune_lr_reruns_only_the_finetune_chain(repo):
    result = dvc(repo, "exp", "run", "-S", "train.finetune_lr=1e-5")
    finetune_evaluations = {f"evaluate@{seed}-finetune" for seed in SEEDS}
    assert ran(result.stdout) == {
        *per_seed("train_finetune"),
        *finetune_evaluations,
        "seeds",
        "plot",
        *CURVE,
        "ladder_finetune@wide",
        "ladder",
        "report",
    }
    for skipped in ("train_scratch", "train_feature_extract@0", "evaluate_scratch", "evaluate@1-feature_extract"):
        assert f"Stage '{skipped}' didn't change, skipping" in result.stdout
    ckpt = torch.load(repo / "models" / "seeds" / "0" / "finetune.pt", weights_only=True)
    assert type(ckpt["params"]["train"]["finetune_lr"]) is float and ckpt["params"]["train"]["finetune_lr"] == 1e-5
    history = (run_folder(repo, "finetune") / "history.tsv").read_text().splitlines()
    lr_column = history[0].split("\t").index("lr_backbone")
    assert {float(row.split("\t")[lr_column]) for row in history[1:]} == {1e-5}

    diff = json.loads(dvc(repo, "metrics", "diff", "--all", "--json").stdout)
    assert "metrics/seeds.json" in diff  # its values may tie: the tiny network is near chance
    changed = {path for path, values in diff.items() if any(v.get("diff") for v in values.values())}
    assert not {p for p in changed if "scratch" in p or "feature_extract" in p}

    # the architectures table reads the runs through `dvc exp show --json`: params as params.yaml holds them, and
    # each metrics file under its own path
    script = (
        "import json; from caltech_transfer.results.experiments import runs_from_dvc; "
        "print(json.dumps(runs_from_dvc()))"
    )
    shown = subprocess.run([sys.executable, "-c", script], cwd=repo, env=environment(), capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    (params, metrics), *others = json.loads(shown.stdout)
    assert params == read_yaml(repo / "params.yaml") and params["train"]["finetune_lr"] == 1e-5
    assert metrics["metrics/scratch/test.json"] == json.loads((repo / "metrics" / "scratch" / "test.json").read_text())
    assert {run[0]["train"]["finetune_lr"] for run in others} >= {1e-5}  # the experiment itself

    columns = dvc(repo, "exp", "show", "--only-changed", "--csv").stdout.splitlines()[0].split(",")
    # the changed params and the spread's changed numbers (2 metrics x mean, std and interval, for fine-tuning and
    # the difference); no column per seed
    assert "train.finetune_lr" in columns and len(columns) <= 30, columns


def still_feature_extract(repo, epochs):
    """Feature extraction for `epochs` at learning rate 0, so that every epoch scores exactly the same and the best
    is epoch 1; params.yaml's text before, to put back."""
    original = (repo / "params.yaml").read_text()
    params = read_yaml(repo / "params.yaml")
    set_dotted(params, "train.feature_extract_lr", 0.0)
    set_dotted(params, "train.feature_extract.epochs", epochs)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return original


def repro_until(repo, resume_file, *args, epochs=1, shell=None):
    """`dvc repro args` in a process session of its own, returned once its stage's resume state holds `epochs`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", *args],
        cwd=repo,
        env={**environment(), **({"SHELL": shell} if shell else {})},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while not (resume_file.exists() and torch.load(resume_file, weights_only=True)["state"]["epoch"] >= epochs):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    return proc


def test_a_stage_interrupted_under_dvc_repro_keeps_its_best_epoch(repo):
    """SIGTERM to `dvc repro` and its stage after the best epoch; DVC deletes the outputs before the rerun, and
    the rerun still ends with the best epoch's checkpoint and the whole history."""
    original = still_feature_extract(repo, 60)
    models = repo / "models" / "seeds" / "0"
    resume_file = models / "feature_extract.resume.pt"
    try:
        proc = repro_until(repo, resume_file, "train_feature_extract@0", epochs=3)
        os.killpg(proc.pid, signal.SIGTERM)  # as a container stop or a scheduler does
        proc.communicate(timeout=120)
        assert proc.returncode != 0 and not (models / "feature_extract.pt").exists()
        interrupted_after = torch.load(resume_file, weights_only=True)["state"]["epoch"]
        assert 3 <= interrupted_after < 60

        rerun = dvc(repo, "repro", "train_feature_extract@0")
        assert f"resuming after epoch {interrupted_after}" in rerun.stdout
        assert torch.load(models / "feature_extract.pt", weights_only=True)["best_epoch"] == 1
        history = (run_folder(repo, "feature_extract") / "history.tsv").read_text().splitlines()
        assert [int(line.split("\t")[0]) for line in history[1:]] == list(range(1, 61))
    finally:
        (repo / "params.yaml").write_text(original)


def test_with_loader_processes_an_interrupted_stage_rerun_under_dvc_repro_is_the_uninterrupted_run(repo):
    """The default two loader processes: SIGTERM to `dvc repro` after the first epoch, `dvc repro` again, and the
    checkpoint is the one an uninterrupted run writes, tensor for tensor."""
    original = (repo / "params.yaml").read_text()
    params = read_yaml(repo / "params.yaml")
    set_dotted(params, "train.workers", 2)  # rerunning nothing (test_a_param_invalidates_exactly_...)
    set_dotted(params, "train.finetune.epochs", 20)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    resume_file = repo / "models" / "seeds" / "0" / "finetune.resume.pt"
    try:
        dvc(repo, "repro", "train_finetune@0")
        uninterrupted = torch.load(repo / "models" / "seeds" / "0" / "finetune.pt", weights_only=True)["state_dict"]
        proc = repro_until(repo, resume_file, "-f", "-s", "train_finetune@0")
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=120)
        interrupted_after = torch.load(resume_file, weights_only=True)["state"]["epoch"]
        assert proc.returncode != 0 and 1 <= interrupted_after < 20

        rerun = dvc(repo, "repro", "train_finetune@0")
        assert f"resuming after epoch {interrupted_after}" in rerun.stdout
        resumed = torch.load(repo / "models" / "seeds" / "0" / "finetune.pt", weights_only=True)["state_dict"]
        assert resumed.keys() == uninterrupted.keys()
        for key, value in uninterrupted.items():
            assert torch.equal(resumed[key], value), key
    finally:
        (repo / "params.yaml").write_text(original)


@pytest.mark.parametrize("shell", ["/bin/sh", "/bin/bash"])
def test_a_stage_ends_with_the_dvc_repro_that_started_it(repo, shell):
    """SIGTERM to `dvc repro` alone (not its process group): the stage it started stops too, within seconds, and
    leaves no output behind for nobody to record; also where DVC's $SHELL stays between the two (dash does)."""
    import psutil

    if not Path(shell).exists():
        pytest.skip(f"no {shell}")
    original = still_feature_extract(repo, 5000)  # far longer than the wait below
    resume_file = repo / "models" / "seeds" / "0" / "feature_extract.resume.pt"
    try:
        proc = repro_until(repo, resume_file, "train_feature_extract@0", shell=shell)
        stage = [
            p for p in psutil.Process(proc.pid).children(recursive=True) if "caltech_transfer" in " ".join(p.cmdline())
        ]
        assert stage, "the stage's process is not found"
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
        gone, alive = psutil.wait_procs(stage, timeout=30)
        for process in alive:
            process.kill()
        assert alive == [], "the stage went on after dvc repro ended"
        assert not (repo / "models" / "seeds" / "0" / "feature_extract.pt").exists()
    finally:
        (repo / "params.yaml").write_text(original)
        resume_file.unlink(missing_ok=True)  # this run's epochs, which the next case would resume
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def workspace_summary(repo, mode):
    """The running or finished stage's summary as `dvc exp show` reads it from the workspace (VS Code polls it)."""
    table = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    workspace = next(row for row in table if row["rev"] == "workspace")
    # data is None, with an "error", while dvc exp run rewrites dvc.lock or an output; an entry's "error" while
    # DVCLive rewrites the file: the next poll reads it
    metrics = (workspace["data"] or {}).get("metrics", {}).get(f"metrics/{mode}/train/metrics.json")
    return (metrics or {}).get("data", {})


def test_dvc_exp_show_follows_a_running_stage_and_a_resumed_run_logs_each_epoch_once(repo):
    """`dvc exp run` of a training stage: between its epochs `dvc exp show` finds the finished ones; after a SIGTERM
    and a rerun, DVCLive's files hold each epoch once and the summary the whole run's."""
    reset_to_head(repo)
    epochs = 40
    command = ["exp", "run", "-S", f"train.scratch.epochs={epochs}", "-S", "train.scratch.batch_size=4"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", *command, "train_scratch"],
        cwd=repo,
        env=environment(),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline, seen = time.time() + 600, {}
    while seen.get("step", 0) < 3:  # the committed summary says 2 (SETTINGS): 3 is this run's
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        seen = workspace_summary(repo, "scratch")
    os.killpg(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=120)
    assert proc.returncode != 0 and seen["step"] < epochs, seen
    assert {"best_val_accuracy", "best_epoch", "train_seconds", "val_accuracy"} <= set(seen)

    rerun = dvc(repo, *command, "train_scratch")
    assert "resuming after epoch" in rerun.stdout, rerun.stdout[-2000:]
    live = repo / "metrics" / "scratch" / "train" / "plots" / "metrics"
    for name in ("train_loss", "val_loss", "val_accuracy"):
        rows = (live / f"{name}.tsv").read_text().splitlines()[1:]
        assert [int(row.split("\t")[0]) for row in rows] == list(range(1, epochs + 1)), name
    assert workspace_summary(repo, "scratch")["step"] == epochs


def reset_to_head(repo):
    """The committed baseline in the workspace again, after tests that left experiments' results there."""
    sh(repo, "git", "checkout", "--", ".")
    dvc(repo, "checkout", "--force")


def test_a_queue_of_two_experiments_runs_in_parallel(repo):
    """Two queued experiments, run two at a time in temporary copies; the data stages come from the DVC cache."""
    reset_to_head(repo)
    for lr in ("1e-3", "3e-4"):  # rates the tiny network trains at; 1e-2 diverges on the textured synthetic data
        dvc(repo, "exp", "run", "--queue", "-S", f"train.finetune_lr={lr}")
    dvc(repo, "queue", "start", "-j", "2")
    deadline = time.time() + 900
    while True:
        status = dvc(repo, "queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        assert time.time() < deadline, status
        time.sleep(3)
    assert status.count("Success") >= 2, status
    names = [line.split()[1] for line in status.splitlines() if "Success" in line][:2]
    for name in names:
        log = dvc(repo, "queue", "logs", name).stdout
        assert "Running stage 'train_finetune@0'" in log
        assert not any(f"Running stage '{stage}'" in log for stage in ("download", "cache", "split@0")), log
    table = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    runs = [exp for commit in table for exp in (commit.get("experiments") or [])]
    found = {}
    for exp in runs:
        data = exp["revs"][0]["data"]
        lr = data["params"]["params.yaml"]["data"]["train"]["finetune_lr"]
        metrics = data["metrics"]["metrics/seeds.json"]["data"]
        found[lr] = metrics["finetune"]["mean_per_class_accuracy"]["mean"]
    assert {1e-3, 3e-4} <= set(found), found


def test_push_clone_pull_and_nothing_to_run(repo, tmp_path):
    """A teammate clones the Git repository, pulls the data, models and metrics, and has nothing to rerun; anyone
    fetches a model by its registry name."""
    reset_to_head(repo)
    dvc(repo, "remote", "add", "-d", "storage", str(tmp_path / "remote"))
    sh(repo, "git", "add", ".dvc/config")
    sh(repo, "git", "commit", "-qm", "remote")
    dvc(repo, "push")
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    dvc(clone, "pull")
    assert (clone / "models" / "seeds" / "0" / "finetune.pt").exists() and (
        clone / "data" / "cache" / "pixels.npy"
    ).exists()
    status = dvc(clone, "status")
    assert "Data and pipelines are up to date" in status.stdout, status.stdout

    # the registry: a version registered (a Git tag, GTO's), then fetched by name from the remote, as a user outside
    # the repository does, predicts
    sh(repo, "gto", "register", "finetune")
    fetched = tmp_path / "fetched" / "finetune.pt"
    dvc(tmp_path, "artifacts", "get", str(repo), "finetune", "-o", str(fetched))
    image = next((clone / "data" / "raw").rglob("image_0001.jpg"))
    predicted = sh(tmp_path, sys.executable, "-m", "caltech_transfer.evaluation.predict", str(fetched), str(image))
    assert predicted.stdout.startswith(f"{image}: class_"), predicted.stdout
