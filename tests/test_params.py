import re
import shutil
import subprocess
import sys

import pytest

from caltech_transfer.core.errors import UserError
from caltech_transfer.core.params import SPEED_ONLY, declared_keys, load_params, read_yaml, validate
from conftest import PROJECT


@pytest.fixture
def project(tmp_path):
    shutil.copy(PROJECT / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(PROJECT / "tests" / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def set_line(project, old, new):
    path = project / "params.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_float_written_by_dvc_exp_run_stays_a_float(project):
    set_line(project, "finetune_lr: 0.0001", "finetune_lr: 1e-05")
    value = load_params("train_finetune", project)["train"]["finetune_lr"]
    assert isinstance(value, float) and value == 1e-5
    assert read_yaml(project / "params.yaml")["train"]["finetune_lr"] == 1e-5


@pytest.mark.parametrize("missing", ["params.yaml", "dvc.yaml"])
def test_a_stage_run_outside_the_project_says_where_to_run_it(project, missing):
    (project / missing).unlink()
    with pytest.raises(UserError, match=f"{missing} not found: run stages from the project's top folder"):
        load_params("train_finetune", project)


def test_each_stage_gets_only_its_declared_keys(project):
    finetune = load_params("train_finetune", project)
    assert set(finetune["train"]) == {
        "seed",
        "final_fit",
        "workers",
        "data_path",
        "processes",
        "finetune_lr",
        "head_lr",
        "finetune",
    }
    assert set(finetune["runtime"]) == {"device", "precision", "channels_last", "compile"}
    assert "scratch" not in finetune["train"] and "split" not in finetune
    assert set(load_params("split", project)) == {"split"}
    assert set(load_params("cache", project)) == {"cache"}
    evaluate = load_params("evaluate", project)
    assert set(evaluate) == {"evaluate", "runtime"}  # no train.* key: a loader setting of training reruns none


def test_loader_processes_rerun_no_training_or_evaluation(project):
    """The number of loader processes changes no draw (tests/test_engine.py), so no stage that trains or scores
    declares it, and each still reads it."""
    for stage in ("train_finetune", "train_scratch", "train_feature_extract", "evaluate", "evaluate_scratch", "curve"):
        assert not set(SPEED_ONLY) & set(declared_keys(stage, project / "dvc.yaml")), stage
    assert "workers" in load_params("train_scratch", project)["train"]
    assert "workers" in load_params("curve", project)["evaluate"]


@pytest.mark.parametrize(
    "old,new,message",
    [
        (
            "  scheme: standard\n  train_per_class",
            "  scheme: standard\n  trian_per_class",
            "unknown key split.trian_per_class; did you mean split.train_per_class",
        ),
        (
            "train_per_class: 30",
            "train_per_class: -3",
            "split.train_per_class = -3 is not valid: expected a whole number >= 2",
        ),
        ("train_per_class: 30", "train_per_class: thirty", "expected a whole number"),
        ("include_background: false", "include_background: 1", "expected true or false"),
        ("scheme: standard", "scheme: random", "expected one of standard, ratio"),
        ("val_per_class: 5", "val_per_class: 0", "split.val_per_class = 0 is not valid: expected a whole number >= 1"),
        ("test_per_class: null", "test_per_class: 0", "split.test_per_class = 0 is not valid"),
    ],
)
def test_bad_values_are_refused_with_one_line(project, old, new, message):
    set_line(project, old, new)
    with pytest.raises(UserError) as err:
        load_params("split", project)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_negative_learning_rate_is_refused(project):
    set_line(project, "finetune_lr: 0.0001", "finetune_lr: -1e-4")
    with pytest.raises(UserError, match="train.finetune_lr = -0.0001 is not valid: expected a finite number >= 0"):
        load_params("train_finetune", project)


@pytest.mark.parametrize(
    "stage,old,new,message",
    [
        (
            "train_finetune",
            "label_smoothing: 0.1",
            "label_smoothing: 1.5",
            "label_smoothing = 1.5 is not valid: expected a finite number >= 0.0 and < 1",
        ),
        (
            "train_finetune",
            "crop_scale_min: 0.25",
            "crop_scale_min: 1.5",
            "crop_scale_min = 1.5 is not valid: expected a finite number > 0 and <= 1",
        ),
        (
            "download",
            "timeout: 60.0",
            "timeout: .inf",
            "download.timeout = inf is not valid: expected a finite number > 0",
        ),
        (
            "train_finetune",
            "input_size: 32",
            "input_size: 100000",
            "model.input_size = 100000 is not valid: expected a whole number >= 16 and <= 2048",
        ),
    ],
)
def test_values_out_of_range_are_refused_at_start(project, stage, old, new, message):
    set_line(project, old, new)
    with pytest.raises(UserError, match=re.escape(message)):
        load_params(stage, project)


def test_a_misspelled_section_is_refused(project):
    (project / "params.yaml").write_text((project / "params.yaml").read_text().replace("\ntrain:", "\ntrian:"))
    with pytest.raises(UserError, match="unknown section trian; did you mean train"):
        load_params("split", project)


def test_string_number_is_read_as_float():
    assert validate({"train": {"head_lr": "1e-3"}})["train"]["head_lr"] == 1e-3


def test_every_declared_key_in_dvc_yaml_is_in_params_yaml():
    stages = read_yaml(PROJECT / "dvc.yaml")["stages"]
    rungs = read_yaml(PROJECT / "params.yaml")["ladder"]
    for name in stages:
        for rung in rungs if name.startswith("ladder_") else [None]:  # a ladder stage's params name its rung
            params = load_params(name, PROJECT, item={"key": rung, "rung": rung})
            assert rung is None or set(params["ladder"]) == {rung}


def test_a_ladder_rung_is_checked_as_every_key_is():
    clean = validate({"ladder": {"lite9": {"arch": "timm/x", "weights": "imagenet"}}})
    assert clean["ladder"]["lite9"] == {"arch": "timm/x", "weights": "imagenet"}
    with pytest.raises(UserError, match="ladder.lite9.weights = 3 is not valid: expected a string"):
        validate({"ladder": {"lite9": {"arch": "timm/x", "weights": 3}}})
    with pytest.raises(UserError, match="unknown key ladder.lite9.size"):
        validate({"ladder": {"lite9": {"arch": "timm/x", "weights": "none", "size": 3}}})
    with pytest.raises(UserError, match="missing key ladder.lite9.weights"):
        validate({"ladder": {"lite9": {"arch": "timm/x"}}}, keys=["ladder"])


def test_a_params_file_dvc_refuses_is_refused_by_the_stages(project):
    """A duplicate key: PyYAML would take the last value, DVC calls the file corrupted; the stages refuse it as DVC
    does, in one line, before writing anything."""
    set_line(project, "  scheme: standard\n  train_per_class", "  scheme: standard\n  scheme: ratio\n  train_per_class")
    stage = subprocess.run(
        [sys.executable, "-m", "caltech_transfer.data.split", "0"], cwd=project, capture_output=True, text=True
    )
    assert stage.returncode == 2 and "Traceback" not in stage.stderr, stage.stderr
    assert stage.stderr.strip() == (
        'error: params.yaml line 9: found duplicate key "scheme" with value "ratio" (original '
        'value: "standard"): DVC refuses this file too; fix that line'
    )
    assert not (project / "data").exists()
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=project, check=True)
    dvc = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=project, capture_output=True, text=True)
    assert dvc.returncode != 0 and "'params.yaml', YAML file structure is corrupted" in dvc.stderr  # DVC's own verdict
