"""Input from the wild, each case built for real and run as the stage or command a user runs: archives as other tools
and systems make them, names the manifests cannot carry, values and files of the right kind but the wrong shape,
outputs that cannot be written. Each ends in a correct result, or in one line (exit 2, no traceback) with every
earlier output unchanged. (A stage outliving the `dvc repro` that started it: tests/test_pipeline.py.)"""

import os
import shutil
import stat
import subprocess
import zipfile

import numpy as np
import pytest
import torch
import yaml

from conftest import PROJECT, make_tree, synthetic_image
from test_robustness import project_dir, refused, run_stage, snapshot

# --- archives as people make them ---


def download_project(root, source):
    """A project folder whose download stage reads `source`, with an earlier download in data/raw."""
    params = yaml.safe_load((PROJECT / "tests" / "params.yaml").read_text())
    params["download"].update(source=str(source), checksum="", inner_checksum="")
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copy(PROJECT / "dvc.yaml", root)
    earlier = root / "data" / "raw" / "101_ObjectCategories" / "earlier"
    earlier.mkdir(parents=True)
    (earlier / "image_0001.jpg").write_bytes(b"the earlier download")
    return root


def zip_of(tree, path, extra=()):
    """A zip of the 101_ObjectCategories folder `tree`, as Finder or zip -r packs a folder, plus `extra` members:
    (ZipInfo or name, bytes)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(tree.rglob("*")):
            if file.is_file():
                zf.write(file, "caltech/" + file.relative_to(tree.parent).as_posix())
        for info, data in extra:
            zf.writestr(info, data)
    return path


def images_in(root):
    return sorted(p.relative_to(root).as_posix() for p in (root / "data" / "raw").rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("wild"), per_class=(3, 3), background=0, extras=False)


def test_a_macs_twin_tree_is_left_out_and_the_real_images_taken(tree, tmp_path):
    junk = b"\x00\x05\x16\x07 AppleDouble resource fork"
    twins = [(f"__MACOSX/caltech/101_ObjectCategories/class_0{i}/._image_0001.jpg", junk) for i in (0, 1)]
    root = download_project(tmp_path, zip_of(tree, tmp_path / "mac.zip", twins))
    assert run_stage(root, "data.download").returncode == 0
    taken = images_in(root)
    assert len(taken) == 6 and not [name for name in taken if "._" in name or "__MACOSX" in name]
    assert all((root / name).read_bytes()[:2] == b"\xff\xd8" for name in taken)  # JPEGs, not forks


def test_a_link_in_a_zip_is_left_out_and_named(tree, tmp_path):
    link = zipfile.ZipInfo("caltech/101_ObjectCategories/class_00/image_0099.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    root = download_project(tmp_path, zip_of(tree, tmp_path / "links.zip", [(link, "/etc/passwd")]))
    result = run_stage(root, "data.download")
    assert result.returncode == 0, result.stderr
    assert "skipped caltech/101_ObjectCategories/class_00/image_0099.jpg: a symbolic link" in result.stdout
    assert len(images_in(root)) == 6


def method_patched(path, method):
    """The zip at `path` with every member's compression method rewritten to `method` (as another tool wrote it)."""
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = data.find(signature)
        while at >= 0:
            data[at + offset : at + offset + 2] = method.to_bytes(2, "little")
            at = data.find(signature, at + 4)
    path.write_bytes(bytes(data))
    return path


def encrypted_member(tree, path):
    info = zipfile.ZipInfo("caltech/101_ObjectCategories/class_00/image_0100.jpg")
    zip_of(tree, path, [(info, b"ciphertext")])
    data = bytearray(path.read_bytes())  # set the "encrypted" flag of that member, as a password-protected zip has
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.rfind(signature)
        data[at + offset] |= 0x1
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("encrypted", "image_0100.jpg' is encrypted: give an archive without a password"),
        ("deflate64", "is compressed with method 9, which Python cannot read"),
        ("bomb", "it would expand to 0.30 GB from"),
    ],
)
def test_archives_python_cannot_or_should_not_extract_are_refused_before_writing(tree, tmp_path, case, message):
    archive = tmp_path / f"{case}.zip"
    if case == "encrypted":
        encrypted_member(tree, archive)
    elif case == "deflate64":
        method_patched(zip_of(tree, archive), 9)
    else:  # 300 MB of zeros in a zip of a few hundred kB
        zip_of(tree, archive, [("caltech/101_ObjectCategories/class_00/image_0500.jpg", bytes(300_000_000))])
    root = download_project(tmp_path, archive)
    before = snapshot(root / "data")
    assert message in refused(run_stage(root, "data.download"))
    assert snapshot(root / "data") == before


def test_a_pipe_in_a_folder_source_is_left_out_and_named(tree, tmp_path):
    source = shutil.copytree(tree, tmp_path / "source" / "101_ObjectCategories")
    os.mkfifo(source / "class_00" / "image_0200.jpg")  # a copy would wait on it for ever
    (tmp_path / "project").mkdir()
    root = download_project(tmp_path / "project", source.parent)
    result = run_stage(root, "data.download")
    assert result.returncode == 0, result.stderr
    assert "image_0200.jpg: not a file or folder (a pipe, socket or device)" in result.stdout
    assert len(images_in(root)) == 6


# --- names the manifests cannot carry ---

SMALL_SPLIT = {"split.train_per_class": 12, "split.val_per_class": 4}  # the small dataset's split


@pytest.mark.parametrize(
    "name, shown",
    [
        ("class\n2", "holds '\\n'"),
        ("class\t2", "holds '\\t'"),
        ("class\u20282", "holds LINE SEPARATOR"),
        (os.fsdecode(b"class_\xff"), "is not valid UTF-8"),
    ],
    ids=["line break", "tab", "line separator", "not UTF-8"],
)
@pytest.mark.parametrize("what", ["class", "file"])
def test_names_the_manifests_cannot_carry_are_refused_with_every_manifest_unchanged(
    small_dataset, tmp_path, name, shown, what
):
    root = project_dir(tmp_path, small_dataset, **SMALL_SPLIT)
    raw = root / "data" / "raw" / "101_ObjectCategories"
    if what == "class":
        shutil.copytree(raw / "class_00", raw / name)
    else:
        synthetic_image(0, np.random.default_rng(0)).save(raw / "class_00" / f"{name}.jpg", "JPEG")
    before = snapshot(root / "data" / "cache")
    message = refused(run_stage(root, "data.cache"))
    assert shown in message and "rename it" in message
    assert snapshot(root / "data" / "cache") == before


# --- values and files of the right kind but the wrong shape ---


@pytest.mark.parametrize("text", ["- a list\n- of values\n", "just a string\n", "train: 5\n"])
def test_params_that_are_valid_yaml_but_not_sections_are_one_line(small_dataset, tmp_path, text):
    root = project_dir(tmp_path, small_dataset)
    (root / "params.yaml").write_text(text)
    assert "params.yaml is not sections of keys" in refused(run_stage(root, "train", "scratch", "0"))


def test_a_last_batch_of_one_image_is_left_out_of_its_epoch(small_dataset, tmp_path):
    """24 training images in batches of 23: batch norm cannot train on the one left, so the epoch leaves it out."""
    root = project_dir(tmp_path, small_dataset, **{"train.scratch.epochs": 2, "train.scratch.batch_size": 23})
    result = run_stage(root, "train", "scratch", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (root / "models" / "scratch.pt").exists()


def test_a_checkpoint_of_another_mode_is_refused_by_the_stage(small_dataset, tmp_path):
    root = project_dir(tmp_path, small_dataset, **{"train.feature_extract.epochs": 1})
    models = root / "models" / "seeds" / "0"
    assert run_stage(root, "train", "feature_extract", "0").returncode == 0
    shutil.copy(models / "feature_extract.pt", models / "finetune.pt")
    message = refused(run_stage(root, "evaluation", "finetune", "0"))
    assert message.startswith("error: models/seeds/0/finetune.pt holds a feature_extract model, not finetune")
    assert not (root / "metrics" / "seeds" / "0" / "finetune").exists()
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["finetune"]["init_head"] = "feature_extract"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    ckpt = torch.load(models / "feature_extract.pt", weights_only=True)
    torch.save({**ckpt, "mode": "scratch"}, models / "feature_extract.pt")
    assert "which holds a scratch model" in refused(run_stage(root, "train", "finetune", "0"))


@pytest.mark.parametrize(
    "change, entry",
    [
        (lambda ckpt: ckpt["preprocessing"].pop("fit"), "preprocessing"),  # before images were fitted to squares
        (lambda ckpt: ckpt.update(classes={"0": "a"}), "classes"),
        (lambda ckpt: ckpt.update(mode="linear_probe"), "mode"),
    ],
    ids=["earlier version", "classes as a mapping", "unknown mode"],
)
def test_predict_refuses_a_checkpoint_of_another_version_or_program(small_dataset, tmp_path, change, entry):
    root = project_dir(tmp_path, small_dataset, **{"train.feature_extract.epochs": 1})
    assert run_stage(root, "train", "feature_extract", "0").returncode == 0
    ckpt = torch.load(root / "models" / "seeds" / "0" / "feature_extract.pt", weights_only=True)
    change(ckpt)
    torch.save(ckpt, tmp_path / "other.pt")
    image = next((root / "data" / "raw").rglob("*.jpg"))
    result = subprocess.run(
        [shutil.which("caltech-predict") or "caltech-predict", str(tmp_path / "other.pt"), str(image)],
        capture_output=True,
        text=True,
    )
    assert f"is not a checkpoint of this version of the project (its {entry} has another form)" in refused(result)


# --- outputs that cannot be written ---


@pytest.mark.parametrize("obstacle", ["a folder where a file goes", "a file where a folder goes"])
def test_an_output_that_cannot_be_written_is_one_line_with_earlier_outputs_unchanged(small_dataset, tmp_path, obstacle):
    root = project_dir(tmp_path, small_dataset, **{"train.feature_extract.epochs": 1})
    assert run_stage(root, "train", "feature_extract", "0").returncode == 0
    metrics = root / "metrics" / "seeds" / "0" / "feature_extract"
    if obstacle == "a folder where a file goes":
        (metrics / "test.json").mkdir(parents=True)
    else:
        metrics.parent.mkdir(exist_ok=True)
        shutil.rmtree(metrics)
        metrics.write_text("a file")
    before = snapshot(root)
    message = refused(run_stage(root, "evaluation", "feature_extract", "0"))
    assert message.startswith("error: cannot write ") and "earlier outputs are unchanged" in message
    assert snapshot(root) == before


def test_a_split_that_cannot_write_one_of_its_files_changes_none_of_them(small_dataset, tmp_path):
    """The manifests, classes and summary are replaced together or not at all: a folder where summary.json goes
    stops the split after it wrote the three manifests' temporary files, and leaves the earlier ones in place."""
    root = project_dir(tmp_path, small_dataset, **SMALL_SPLIT)
    earlier = root / "data" / "split" / "1"
    shutil.copytree(root / "data" / "split" / "0", earlier)  # seed 1 draws other images: every manifest changes
    (earlier / "summary.json").unlink()
    (earlier / "summary.json").mkdir()
    before = snapshot(root / "data" / "split")
    assert refused(run_stage(root, "data.split", "1")).startswith("error: cannot write ")
    assert snapshot(root / "data" / "split") == before
