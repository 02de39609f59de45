"""The package's shape: layers that import only downwards, and stage deps in dvc.yaml that cover every module a
stage runs, so that DVC reruns a stage whenever code it runs changes."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from caltech_transfer.core.errors import UserError
from caltech_transfer.core.params import SCHEMA, read_yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "caltech_transfer"
LAYERS = ("core", "data", "batches", "model", "train", "evaluation", "results")  # each imports only from those before
# Modules a stage runs that its deps may leave out, because they hold no code (checked below): the package's
# docstring and the layers' empty __init__ files.
NOT_DEPS = [p.relative_to(ROOT).as_posix() for p in sorted(PACKAGE.glob("**/__init__.py"))]
TORCH_FREE_STAGES = ("download", "cache", "split", "plot", "report")


def module_file(name):
    """The file of module `caltech_transfer.x.y`, or None when `name` is not one (a function, a class)."""
    path = PACKAGE.joinpath(*name.split(".")[1:])
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(file):
    """The package modules `file` imports, with the packages whose __init__ runs on the way."""
    package = ".".join(("caltech_transfer", *file.relative_to(PACKAGE).parent.parts))
    names = []
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + [node.module] if node.module else parts)
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    found = set()
    for name in names:
        parts = name.split(".")
        if parts[0] != "caltech_transfer":
            continue
        for end in range(1, len(parts) + 1):  # caltech_transfer, caltech_transfer.data, ...: each __init__ runs
            path = module_file(".".join(parts[:end]))
            if path is not None:
                found.add(path)
    return found


def closure(module):
    """Every package file that `python -m module` runs: its own, the packages' __init__ on its way, and every
    module it imports, directly or through other modules."""
    seen = {module_file(".".join(module.split(".")[:end])) for end in range(1, len(module.split(".")) + 1)}
    main = PACKAGE.joinpath(*module.split(".")[1:], "__main__.py")
    seen.add(main if main.is_file() else module_file(module))
    todo = list(seen)
    while todo:
        for path in imported_modules(todo.pop()):
            if path not in seen:
                seen.add(path)
                todo.append(path)
    return seen


def stages(dvc_yaml=ROOT / "dvc.yaml"):
    """{stage: (module, deps)} for every stage of dvc.yaml (a foreach stage once, as its template)."""
    result = {}
    for name, entry in read_yaml(dvc_yaml)["stages"].items():
        entry = entry.get("do", entry)
        words = entry["cmd"].split()
        assert words[:2] == ["python", "-m"] and words[2].startswith("caltech_transfer."), entry["cmd"]
        result[name] = (words[2], [str(dep) for dep in entry.get("deps", [])])
    return result


def uncovered(stage_table):
    """{stage: [package files it runs that none of its deps covers]}, only the stages with any."""
    missing = {}
    for name, (module, deps) in stage_table.items():
        for path in sorted(closure(module)):
            rel = path.relative_to(ROOT).as_posix()
            if rel not in NOT_DEPS and not any(rel == dep or rel.startswith(dep.rstrip("/") + "/") for dep in deps):
                missing.setdefault(name, []).append(rel)
    return missing


def test_every_stage_depends_on_the_code_it_runs():
    assert uncovered(stages()) == {}


def code_deps(module):
    """The code deps that cover exactly what `python -m module` runs: a layer's folder where it runs every module
    of it, else the modules it runs one by one."""
    ran = {p.relative_to(ROOT).as_posix() for p in closure(module)} - set(NOT_DEPS)
    deps = []
    for folder in sorted({path.rsplit("/", 1)[0] for path in ran}):
        files = {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).glob("*.py")} - set(NOT_DEPS)
        deps += [folder] if files <= ran else sorted(files & ran)
    return deps


@pytest.mark.parametrize("stage", list(stages()))
def test_no_stage_depends_on_code_it_does_not_run(stage):
    """Editing a module a stage never imports leaves it up to date (the training-only batches do not rerun the
    data stages, the download does not rerun training)."""
    module, deps = stages()[stage]
    assert sorted(dep for dep in deps if dep.startswith("src/")) == code_deps(module)


def test_a_dep_left_out_is_caught():
    table = stages()
    module, deps = table["train_finetune"]
    table["train_finetune"] = (module, [d for d in deps if d != "src/caltech_transfer/train"])
    missing = uncovered(table)
    assert list(missing) == ["train_finetune"]
    assert {"src/caltech_transfer/train/__main__.py", "src/caltech_transfer/train/engine.py"} <= set(
        missing["train_finetune"]
    )


def test_every_stage_runs_a_module_of_the_package():
    for name, (module, _) in stages().items():
        main = PACKAGE.joinpath(*module.split(".")[1:], "__main__.py")
        assert main.is_file() or module_file(module) is not None, f"{name}: no module {module}"


def test_what_deps_may_leave_out_runs_no_code():
    for rel in NOT_DEPS:
        body = ast.parse((ROOT / rel).read_text()).body
        assert len(body) <= 1 and all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def layer(path):
    parts = path.relative_to(PACKAGE).parts
    return LAYERS.index(parts[0]) if len(parts) > 1 else -1  # the package's own __init__ is below every layer


def test_every_module_lives_in_a_layer():
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert loose == []
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(LAYERS)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.relative_to(PACKAGE).as_posix())
def test_imports_flow_down_the_layers(path):
    above = [
        imported.relative_to(PACKAGE).as_posix() for imported in imported_modules(path) if layer(imported) > layer(path)
    ]
    assert above == [], f"{path.relative_to(PACKAGE)} imports from a layer above its own"


def test_results_hold_no_training_or_model_code():
    for stage in ("plot", "report"):
        module, _ = stages()[stage]
        layers = {LAYERS[layer(p)] for p in closure(module) if layer(p) >= 0}
        assert layers <= {"core", "data", "results"}, stage


@pytest.mark.parametrize("stage", TORCH_FREE_STAGES)
def test_stages_that_run_no_network_load_no_torch(stage):
    module, _ = stages()[stage]
    modules = sorted(
        "caltech_transfer." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        for p in closure(module)
    )
    probe = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "False", f"{stage} loads torch through {modules}"


def test_one_list_of_modes_and_of_fits():
    from caltech_transfer.core.layout import MODES
    from caltech_transfer.data.images import FITS
    from caltech_transfer.train.modes import MODES as MODE_TABLE

    assert tuple(MODE_TABLE) == MODES
    with pytest.raises(UserError, match=f"one of {', '.join(FITS)}$"):  # the params accept exactly the fits there are
        SCHEMA["cache.fit"]("cache.fit", "stretch")
    assert all(SCHEMA["cache.fit"]("cache.fit", fit) == fit for fit in FITS)


@pytest.mark.parametrize("folder", ["src", "benchmarks"])
def test_functions_are_short(folder):
    long = [
        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in sorted((ROOT / folder).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > 60
    ]
    assert long == []


def test_byte_code_is_no_dep():
    """Folder deps would otherwise change with every import that writes __pycache__ (another Python, another clone)."""
    assert "__pycache__/" in (ROOT / ".dvcignore").read_text().split()


# What the code uses that older releases lack: (package, the release that brought it, a text that marks its use).
NEWEST_USED = [
    ("torch", (2, 5), "torch.OutOfMemoryError"),
    ("torch", (2, 3), "torch.amp.GradScaler("),
    ("python", (3, 11, 4), 'filter="data"'),  # tarfile's extraction filter: 3.11.4 in the 3.11 line
]


def declared_floor(package):
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    if package == "python":
        spec = project["requires-python"]
    else:
        spec = next(d for d in project["dependencies"] if re.match(rf"{package}\b", d))
    return tuple(int(n) for n in re.search(r">=\s*([\d.]+)", spec).group(1).split("."))


@pytest.mark.parametrize("package, release, marker", NEWEST_USED, ids=lambda v: str(v))
def test_declared_versions_are_those_the_code_needs(package, release, marker):
    code = "".join(p.read_text() for folder in ("src", "benchmarks") for p in (ROOT / folder).rglob("*.py"))
    assert marker in code, f"{marker} is no longer used: drop it from NEWEST_USED"
    assert declared_floor(package) >= release, (
        f"pyproject.toml admits {package} older than {release}, which lacks {marker}"
    )
