"""Hostile input ends in a result or a one-line error (no traceback, a non-zero exit), and nothing is lost:
no partial output, no temporary file, no previous output damaged."""

import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from caltech_transfer.core.cli import cli
from caltech_transfer.core.errors import UserError
from caltech_transfer.data import download
from caltech_transfer.evaluation.evaluate import evaluate
from caltech_transfer.evaluation.predict import main as predict_main
from caltech_transfer.model.checkpoints import write_pretrained
from caltech_transfer.train import engine
from conftest import PROJECT, RUNTIME, data_paths, make_tree, scoring_paths, stage_params, write_inputs


def one_line_exit(capsys, fn, *args, code=2):
    """Run a cli-wrapped `fn`; return its stderr after checking the exit status and that it is one line."""
    with pytest.raises(SystemExit) as exit_info:
        fn(*args)
    err = capsys.readouterr().err
    assert exit_info.value.code == code, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def good_checkpoint(small_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("good")
    params = stage_params("train_feature_extract", **{"train.feature_extract.epochs": 1})
    engine.train("feature_extract", params, data_paths(small_dataset, out, "feature_extract", params))
    return out / "feature_extract.pt"


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/caltech-transfer-pwned",))


def bad_checkpoints(tmp_path, good):
    """name -> (path, part of the message)"""
    whole = good.read_bytes()
    files = {
        "empty": (b"", "is empty"),
        "truncated": (whole[: len(whole) // 2], "not a readable checkpoint"),
        "corrupt": (bytes(reversed(whole)), "not a readable checkpoint"),
        "text": (b"hello\n", "not a readable checkpoint"),
        "malicious": (pickle.dumps(Exploit()), "not a readable checkpoint"),
    }
    cases = {}
    for name, (content, message) in files.items():
        (tmp_path / f"{name}.pt").write_bytes(content)
        cases[name] = (tmp_path / f"{name}.pt", message)
    ckpt = torch.load(good, weights_only=True)
    torch.save(ckpt["state_dict"], tmp_path / "plain.pt")
    cases["plain state_dict"] = (tmp_path / "plain.pt", "not a checkpoint of this project")
    torch.save({**ckpt, "arch": "alexnet"}, tmp_path / "other_arch.pt")
    cases["another arch"] = (tmp_path / "other_arch.pt", "do not fit its architecture alexnet")
    torch.save({**ckpt, "arch": "no_such_net"}, tmp_path / "unknown_arch.pt")
    cases["unknown arch"] = (tmp_path / "unknown_arch.pt", "unknown architecture 'no_such_net'")
    return cases


def test_bad_checkpoints_are_one_line_errors_in_predict_and_evaluate(good_checkpoint, small_dataset, tmp_path, capsys):
    image = next(small_dataset.rglob("*.jpg"))
    evaluate_stage = cli(evaluate)  # as stages/evaluate.py runs it
    for name, (path, message) in bad_checkpoints(tmp_path, good_checkpoint).items():
        err = one_line_exit(capsys, predict_main, [str(path), str(image)])
        assert message in err, (name, err)
        err = one_line_exit(
            capsys,
            evaluate_stage,
            path,
            "feature_extract",
            scoring_paths(small_dataset, tmp_path / "metrics", good_checkpoint.parent / "features"),
            RUNTIME,
        )
        assert message in err, (name, err)
        assert not (tmp_path / "metrics").exists()
    assert not os.path.exists("/tmp/caltech-transfer-pwned")


def test_a_corrupt_resume_state_is_set_aside_and_the_next_run_starts_afresh(small_dataset, tmp_path):
    params = stage_params("train_scratch", **{"train.scratch.epochs": 1, "train.scratch.batch_size": 8})
    paths = data_paths(small_dataset, tmp_path, "scratch", params)
    resume_file = tmp_path / "scratch.resume.pt"
    resume_file.write_bytes(b"garbage")
    with pytest.raises(UserError, match="cannot resume from .*scratch.resume.pt.*moved to .*damaged"):
        engine.train("scratch", params, paths)
    assert not resume_file.exists() and (tmp_path / "scratch.resume.pt.damaged").exists()
    assert engine.train("scratch", params, paths)["best_epoch"] == 1


def test_predict_arguments(good_checkpoint, small_dataset, tmp_path, capsys):
    image = next(small_dataset.rglob("*.jpg"))
    for top in ("0", "-1"):
        assert "give 1 or more" in one_line_exit(capsys, predict_main, [str(good_checkpoint), str(image), "--top", top])
    predict_main([str(good_checkpoint), str(image), "--csv", str(tmp_path / "new" / "folder" / "out.csv")])
    assert len((tmp_path / "new" / "folder" / "out.csv").read_text().splitlines()) == 1 + 3


def test_retries_are_counted_right_and_an_unknown_host_fails_at_once(http_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    url = http_server(b"x" * 1000, cut_first=100)
    for retries, expected in ((2, ["retry 1 of 2", "retry 2 of 2"]), (0, [])):
        with pytest.raises(UserError, match=f"in {retries + 1} attempts"):
            download.http_download(url, tmp_path / "f.zip", retries=retries, timeout=5)
        out = capsys.readouterr().out
        assert [line.split("; ")[-1] for line in out.splitlines() if "retry" in line] == expected
    started = time.time()
    with pytest.raises(UserError, match="cannot resolve the host"):
        download.http_download("http://no-such-host.invalid/caltech-101.zip", tmp_path / "g.zip", retries=5, timeout=5)
    assert time.time() - started < 5


def test_an_empty_class_folder_is_named(tmp_path):
    from caltech_transfer.data import scan

    cats = make_tree(tmp_path / "raw", per_class=(12, 12), background=0, extras=False)
    (cats / "class_empty").mkdir()
    with pytest.raises(UserError, match="class folder .*class_empty has no readable image.*remove it"):
        scan.scan(cats, workers=1)


def spawn(args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(condition, seconds=120):
    deadline = time.time() + seconds
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


@pytest.fixture
def stage_dir(small_dataset, tmp_path):
    """A working folder laid out like the project, with the data stages done."""
    shutil.copytree(small_dataset / "split", tmp_path / "data" / "split" / "0")
    shutil.copytree(small_dataset / "cache", tmp_path / "data" / "cache")
    shutil.copy(PROJECT / "dvc.yaml", tmp_path)
    text = (PROJECT / "tests" / "params.yaml").read_text()
    shorter = text.replace(
        "scratch: {input_size: null, epochs: 150, batch_size: 64",
        "scratch: {input_size: null, epochs: 40, batch_size: 8",
    )
    assert shorter != text, "tests/params.yaml no longer has the scratch recipe this test shortens"
    (tmp_path / "params.yaml").write_text(shorter)
    return tmp_path


def test_sigterm_during_training_stops_cleanly_and_the_rerun_finishes(stage_dir):
    previous = {
        "models/scratch.pt": b"previous model",
        "metrics/scratch/history.tsv": b"previous history",
    }  # DVCLive's summary and plots are rewritten as each epoch ends, by design
    for name, content in previous.items():
        (stage_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (stage_dir / name).write_bytes(content)
    proc = spawn(["-m", "caltech_transfer.train", "scratch", "0"], stage_dir)
    wait_for(lambda: (stage_dir / "models" / "scratch.resume.pt").exists())
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted (SIGTERM)" in err and "Traceback" not in err
    for name, content in previous.items():  # the previous run's outputs are untouched, all of them
        assert (stage_dir / name).read_bytes() == content, name
    assert not [p for p in stage_dir.rglob("*") if p.name.endswith(".tmp")]

    for name in previous:  # what DVC does before it reruns a stage
        (stage_dir / name).unlink()
    rerun = subprocess.run(
        [sys.executable, "-m", "caltech_transfer.train", "scratch", "0"], cwd=stage_dir, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming after epoch" in rerun.stdout
    history = (stage_dir / "metrics" / "scratch" / "history.tsv").read_text().splitlines()
    assert [int(line.split("\t")[0]) for line in history[1:]] == list(range(1, 41))
    ckpt = torch.load(stage_dir / "models" / "scratch.pt", weights_only=True)
    live = (stage_dir / "metrics" / "scratch" / "train" / "plots" / "metrics" / "val_accuracy.tsv").read_text()
    assert [int(line.split("\t")[0]) for line in live.splitlines()[1:]] == list(range(1, 41))
    accuracies = [float(line.split("\t")[4]) for line in history[1:]]
    assert accuracies[ckpt["best_epoch"] - 1] == max(accuracies)
    assert not (stage_dir / "models" / "scratch.resume.pt").exists()


def test_sigterm_during_extraction_leaves_no_temporary_folder(caltech_tree, tmp_path):
    marker = tmp_path / "extracting"
    script = f"""
import time
from caltech_transfer.data import download
from caltech_transfer.core.cli import cli
real_copy = download.copy_folder
def slow_copy(source, dest):
    result = real_copy(source, dest)
    open({str(marker)!r}, "w").close()
    time.sleep(60)
    return result
download.copy_folder = slow_copy
cli(lambda: download.run({str(caltech_tree)!r}, "", "", "data/raw", "data/downloads"))()
"""
    proc = spawn(["-c", script], tmp_path)
    wait_for(marker.exists)
    assert list((tmp_path / "data").glob(".raw-tmp-*"))  # the extraction is under way
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "interrupted (SIGTERM)" in err and "Traceback" not in err
    assert not list((tmp_path / "data").glob(".raw-tmp-*")) and not (tmp_path / "data" / "raw").exists()


def test_a_stage_with_worker_processes_still_ends(caltech_tree, tmp_path):
    """Pool workers inherit the SIGTERM handler; the pool's own shutdown (it terminates them) must not hang."""
    script = f"""
from pathlib import Path
from caltech_transfer.core.cli import cli
from caltech_transfer.data.scan import check_image, parallel_map
files = sorted(Path({str(caltech_tree)!r}).rglob("*.jpg")) * 4
cli(lambda: print(len(list(parallel_map(check_image, files, 2, desc="check")))))()
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.strip()) >= 64


def predict_process(*args):
    return subprocess.run(
        [sys.executable, "-m", "caltech_transfer.evaluation.predict", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def refused(result):
    """The one-line refusal of a real CLI or stage process: exit status 2, one line on stderr besides the progress
    bars of the work before it, no traceback."""
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip() and not re.search(r"\d+%\|", line)]
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    return lines[0]


def test_predict_names_every_entry_of_a_folder_it_skips(good_checkpoint, small_dataset, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    image = next(small_dataset.rglob("*.jpg"))
    shutil.copy(image, folder / "kept.jpg")
    (folder / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    (folder / "elsewhere").symlink_to(small_dataset)
    os.mkfifo(folder / "pipe.jpg")
    result = predict_process(good_checkpoint, folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{folder / 'kept.jpg'}: class_") and len(result.stdout.splitlines()) == 1
    skipped = sorted(result.stderr.splitlines()[:-1])  # the last line is the run's time and memory
    assert skipped == [
        f"{folder / 'elsewhere'}: skipped, a link to a folder, not followed",
        f"{folder / 'gone.jpg'}: skipped, a dangling symbolic link",
        f"{folder / 'pipe.jpg'}: skipped, not a regular file (a pipe, socket or device)",
    ]


@pytest.mark.parametrize(
    "target, message",
    [
        ("folder", "is a folder: give a file name"),
        ("folder/earlier.csv/out.csv", "earlier.csv is a file, not a folder"),
    ],
)
def test_predict_refuses_an_output_it_cannot_write_before_any_work(
    good_checkpoint, small_dataset, tmp_path, target, message
):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "earlier.csv").write_text("an earlier output\n")
    image = next(small_dataset.rglob("*.jpg"))
    result = predict_process(good_checkpoint, image, "--csv", tmp_path / target)
    assert message in refused(result) and result.stdout == ""  # refused before a single prediction
    assert [p.name for p in (tmp_path / "folder").iterdir()] == ["earlier.csv"]
    assert (tmp_path / "folder" / "earlier.csv").read_text() == "an earlier output\n"


def test_split_ratios_that_leave_a_split_empty_are_refused_before_any_manifest(tmp_path):
    make_tree(tmp_path / "data" / "raw", per_class=(12, 12), background=0, extras=False)
    shutil.copy(PROJECT / "dvc.yaml", tmp_path)
    params = (PROJECT / "tests" / "params.yaml").read_text()
    (tmp_path / "params.yaml").write_text(
        params.replace("scheme: standard", "scheme: ratio").replace(
            "ratios: [0.8, 0.1, 0.1]", "ratios: [0.95, 0.05, 0.0]"
        )
    )
    assert run_stage(tmp_path, "data.cache").returncode == 0
    result = run_stage(tmp_path, "data.split", "0")
    assert "split.ratios [0.95, 0.05, 0.0] give class class_00 (12 images) no test image" in refused(result)
    assert not (tmp_path / "data" / "split").exists()


def project_dir(root, small_dataset, features=True, **overrides):
    """A folder laid out like the project with the small dataset's raw images, split and cache, and the tests'
    params with dotted-key overrides."""
    from caltech_transfer.core.params import read_yaml, set_dotted

    shutil.copytree(small_dataset / "raw", root / "data" / "raw")
    shutil.copytree(small_dataset / "split", root / "data" / "split" / "0")
    shutil.copytree(small_dataset / "cache", root / "data" / "cache")
    shutil.copy(PROJECT / "dvc.yaml", root)
    params = read_yaml(PROJECT / "tests" / "params.yaml")
    for dotted, value in overrides.items():
        set_dotted(params, dotted, value)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # the `pretrained` and `features` stages' outputs for the tests' own params (random weights)
    if features:
        write_inputs(root / "data" / "cache", root / "data", params)
    else:
        write_pretrained(params["model"]["arch"], "none", root / "data" / "pretrained.pt")
    return root


def run_stage(root, module, *args):
    """`python -m caltech_transfer.<module> args`, as dvc.yaml runs a stage."""
    return subprocess.run(
        [sys.executable, "-m", f"caltech_transfer.{module}", *args], cwd=root, capture_output=True, text=True
    )


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "row",
    ["/etc/passwd,class_00,0,3", "../../../../etc/hostname,class_00,0,3", "class_00/image_0001.jpg,class_00,0,-1"],
)
def test_a_manifest_reads_nothing_but_the_cache(small_dataset, tmp_path, row):
    """A hand-edited or hostile manifest names cached images only, each by its row in the cache and its path,
    and both must agree: no stage decodes or reads any file a manifest names."""
    root = project_dir(tmp_path, small_dataset)
    manifest = root / "data" / "split" / "0" / "val.csv"
    lines = manifest.read_text().splitlines()
    lines[3] = row
    manifest.write_text("\n".join(lines) + "\n")
    assert refused(run_stage(root, "train", "feature_extract", "0")) == (
        "error: data/split/0/val.csv names other images than data/cache/index.csv (the cache changed since the split "
        "was made): rerun the split stage (dvc repro split)"
    )
    assert not (root / "models").exists()


@pytest.mark.parametrize("damage", ["truncated", "other shape"])
def test_a_damaged_cache_stops_training_with_the_stage_to_rerun(small_dataset, tmp_path, damage):
    root = project_dir(tmp_path, small_dataset)
    cache = root / "data" / "cache" / "pixels.npy"
    if damage == "truncated":
        cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    else:
        np.save(cache, np.zeros((54, 20, 20, 3), np.uint8))  # as many images, at another size than meta.json's
    message = refused(run_stage(root, "train", "feature_extract", "0"))
    assert message.startswith("error: data/cache/pixels.npy ") and message.endswith("rebuild it (dvc repro -f cache)")
    assert not (root / "models").exists() and not (root / "metrics").exists()


def test_an_input_size_too_small_for_the_architecture_is_refused_before_training(small_dataset, tmp_path):
    root = project_dir(tmp_path, small_dataset, features=False, **{"model.arch": "alexnet", "model.input_size": 16})
    message = refused(run_stage(root, "train", "scratch", "0"))
    assert message.startswith(
        "error: 16 px (model.input_size, or train.scratch.input_size for scratch) is too small for alexnet: "
    )
    assert message.endswith("; use a larger input size")
    assert not (root / "models").exists()


def test_weights_of_the_same_names_but_other_shapes_are_refused(small_dataset, tmp_path):
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 5, 5)  # the key names of resnet18, a tensor of another shape
    torch.save(state, tmp_path / "other.pth")
    root = project_dir(tmp_path / "project", small_dataset, **{"model.weights": str(tmp_path / "other.pth")})
    before = snapshot(root / "data")
    assert refused(run_stage(root, "model", "pretrained")) == (
        f"error: weights {tmp_path / 'other.pth'} do not fit this architecture: 1 tensors have other shapes (e.g. "
        "layer1.0.conv1.weight: (64, 64, 5, 5) in the file, (64, 64, 3, 3) here); give weights of model.arch"
    )
    assert snapshot(root / "data") == before


def test_a_learning_curve_point_of_no_images_is_refused(small_dataset, tmp_path):
    root = project_dir(tmp_path, small_dataset, **{"curve.shots": [0, 2]})
    assert refused(run_stage(root, "evaluation.curve", "0", "0")).startswith(
        "error: curve.shots: 0 images per class is not between 1 and 8, the training pool's smallest class"
    )
    assert not (root / "models").exists()
    message = refused(run_stage(root, "results", "report", "0"))
    assert "curve.shots = 0 is not valid: expected a whole number >= 1" in message


def test_evaluate_refuses_a_diverged_model_before_writing_any_metric(good_checkpoint, small_dataset, tmp_path):
    root = project_dir(tmp_path, small_dataset)
    ckpt = torch.load(good_checkpoint, weights_only=True)
    ckpt["state_dict"]["head.weight"][0, 0] = float("inf")  # as a diverged run leaves it
    (root / "models" / "seeds" / "0").mkdir(parents=True)
    torch.save(ckpt, root / "models" / "seeds" / "0" / "feature_extract.pt")
    message = refused(run_stage(root, "evaluation", "feature_extract", "0"))
    assert message.startswith(
        "error: models/seeds/0/feature_extract.pt gives non-finite outputs (NaN or infinity) for "
    )
    assert message.endswith(
        "retrain it with a lower learning rate (train.feature_extract_lr) or train.feature_extract.grad_clip"
    )
    assert not (root / "metrics").exists()
