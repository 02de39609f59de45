"""The one params loader: reads params.yaml, keeps 1e-05 a float, validates, and hands each stage
only the keys its dvc.yaml entry declares (so DVC reruns exactly the stages whose params changed)."""

import difflib
import math
import re
from pathlib import Path

from ruamel.yaml import YAML, YAMLError

from .errors import UserError


def read_yaml(path):
    """A YAML file read as DVC reads params.yaml (ruamel.yaml, YAML 1.2): `1e-05` is a float, `yes` a string,
    and what DVC refuses as corrupted (a duplicate key, say) raises YAMLError here too."""
    with open(path) as f:
        return YAML(typ="safe").load(f) or {}


# --- value checks: each takes (key, value) and returns the clean value or raises UserError ---


def _fail(key, value, expected):
    raise UserError(f"params.yaml: {key} = {value!r} is not valid: expected {expected}")


def Float(minimum=0.0, positive=False, below=None, at_most=None):
    """A finite number >= minimum (> 0 when positive), < below and <= at_most where given."""

    def check(key, value):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                _fail(key, value, "a number")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(key, value, "a number")
        value = float(value)
        low = "> 0" if positive else f">= {minimum}"
        high = f" and < {below}" if below is not None else f" and <= {at_most}" if at_most is not None else ""
        if (
            not math.isfinite(value)
            or (positive and value <= 0)
            or value < minimum
            or (below is not None and value >= below)
            or (at_most is not None and value > at_most)
        ):
            _fail(key, value, f"a finite number {low}{high}")
        return value

    return check


def Int(minimum=0, maximum=None):
    def check(key, value):
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(key, value, "a whole number")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            _fail(key, value, f"a whole number >= {minimum}" + (f" and <= {maximum}" if maximum is not None else ""))
        return value

    return check


def Bool(key, value):
    if not isinstance(value, bool):
        _fail(key, value, "true or false")
    return value


def Str(key, value):
    if not isinstance(value, str):
        _fail(key, value, "a string")
    return value


def Choice(*choices):
    def check(key, value):
        if value not in choices:
            _fail(key, value, "one of " + ", ".join(choices))
        return value

    return check


def Optional(inner):
    def check(key, value):
        return None if value is None else inner(key, value)

    return check


def Checksum(key, value):
    if value in ("", None):
        return ""
    if not isinstance(value, str) or not re.fullmatch(r"(md5:[0-9a-fA-F]{32}|sha256:[0-9a-fA-F]{64})", value):
        _fail(key, value, "'md5:<32 hex digits>', 'sha256:<64 hex digits>' or '' to skip the check")
    return value.lower()


def Ratios(key, value):
    if not isinstance(value, list) or len(value) != 3:
        _fail(key, value, "a list of three fractions [train, val, test]")
    value = [Float()(key, v) for v in value]
    if abs(sum(value) - 1.0) > 1e-6:
        _fail(key, value, "three fractions that add up to 1")
    return value


_RECIPE = {
    "epochs": Int(1),
    "batch_size": Int(1),
    "crop_scale_min": Float(positive=True, at_most=1),
    "optimizer": Choice("sgd", "adam", "adamw"),
    "momentum": Float(below=1),
    "weight_decay": Float(),
    "scheduler": Choice("cosine", "step", "none"),
    "warmup_steps": Int(0),
    "step_size": Int(1),
    "gamma": Float(positive=True, at_most=1),
    "min_lr": Float(),
    "label_smoothing": Float(below=1),
    "grad_clip": Float(),
    "patience": Int(0),
}


def Shots(key, value):
    if not isinstance(value, list) or not value:
        _fail(key, value, "a list of training images per class, e.g. [1, 5, 10, 20, 30]")
    shots = [Int(1)(key, v) for v in value]
    if len(set(shots)) < len(shots):
        _fail(key, value, "numbers of images per class each named once")
    return shots


def Seeds(key, value):
    """Split seeds: distinct whole numbers >= 0, at least one (the first one's runs are the ones shown one by one)."""
    if not isinstance(value, list) or not value:
        _fail(key, value, "a list of split seeds, e.g. [0, 1, 2]")
    seeds = [Int(0)(key, v) for v in value]
    if len(set(seeds)) < len(seeds):
        _fail(key, value, "split seeds each named once")
    return seeds


SCHEMA = {
    "download.source": Str,
    "download.checksum": Checksum,
    "download.inner_checksum": Checksum,
    "download.retries": Int(0),
    "download.timeout": Float(positive=True),
    "split.scheme": Choice("standard", "ratio"),
    "split.train_per_class": Int(2),
    "split.val_per_class": Int(1),
    "split.test_per_class": Optional(Int(1)),
    "split.ratios": Ratios,
    "split.include_background": Bool,
    "cache.image_size": Int(16, maximum=2048),
    "cache.fit": Choice("crop", "pad", "squash"),  # data.images.FITS
    "model.arch": Str,
    "model.weights": Str,
    "model.input_size": Optional(Int(16, maximum=2048)),  # larger only exhausts memory
    "model.crop_pct": Optional(Float(positive=True, at_most=1)),
    "augment.hflip": Bool,
    "augment.color_jitter": Float(at_most=1),
    "augment.rotation": Float(at_most=180),
    "runtime.device": Choice("auto", "cpu", "cuda"),
    "runtime.precision": Choice("auto", "fp32", "bf16", "fp16"),
    "runtime.channels_last": Bool,
    "runtime.compile": Bool,
    "train.seed": Int(None),
    "train.final_fit": Bool,
    "train.workers": Int(0),
    "train.data_path": Choice("auto", "loader", "device"),
    "train.processes": Int(1),
    "train.finetune_lr": Float(),
    "train.head_lr": Float(),
    "train.scratch_lr": Float(),
    "train.feature_extract_lr": Float(),
    **{f"train.{mode}.{k}": v for mode in ("finetune", "scratch", "feature_extract") for k, v in _RECIPE.items()},
    "train.finetune.freeze_epochs": Int(0),
    "train.finetune.init_head": Choice("none", "feature_extract"),
    "train.feature_extract.augment": Bool,
    "train.scratch.input_size": Optional(Int(16, maximum=2048)),  # null: model.input_size
    "train.scratch.auto_augment": Choice("none", "trivial"),
    "train.scratch.mixup_alpha": Float(),
    "train.scratch.cutmix_alpha": Float(),
    "study.seeds": Seeds,
    "curve.shots": Shots,
    "curve.seeds": Seeds,
    "curve.feature_extract_steps": Int(1),
    "curve.finetune_steps": Int(1),
    "evaluate.batch_size": Int(1),
    "evaluate.workers": Int(0),
    "plot.mistakes": Int(0),
    "plot.embedding": Choice("tsne", "pca"),
    "plot.embedding_points": Int(10),
    # the backbone ladder: any number of rungs, each named by the user (ladder.<rung>.arch, ladder.<rung>.weights)
    "ladder.*.arch": Str,
    "ladder.*.weights": Str,
}
SECTIONS = sorted({key.split(".")[0] for key in SCHEMA})


def schema_key(dotted):
    """The SCHEMA entry that checks `dotted`: itself, or the wildcard one of a user-named part (`ladder.lite1.arch`
    is checked by `ladder.*.arch`); None for an unknown key."""
    if dotted in SCHEMA:
        return dotted
    parts = dotted.split(".")
    wildcard = ".".join([parts[0], "*", *parts[2:]]) if len(parts) > 2 else None
    return wildcard if wildcard in SCHEMA and re.fullmatch(r"[A-Za-z0-9_-]+", parts[1]) else None


def _flatten(tree, prefix=""):
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, dotted + ".")
        else:
            yield dotted, value


def set_dotted(tree, dotted, value):
    """tree["a"]["b"] = value for dotted "a.b", creating the parents as needed."""
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def validate(raw, keys=None):
    """Check every leaf of `raw` (a nested dict) against SCHEMA; return the clean nested dict.
    With `keys`, only leaves under those dotted prefixes are kept, and each prefix must exist."""
    clean = {}
    for section in raw:  # a misspelled section would otherwise be ignored by every stage
        if section not in SECTIONS:
            close = difflib.get_close_matches(str(section), SECTIONS, n=1)
            raise UserError(
                f"params.yaml: unknown section {section}"
                + (f"; did you mean {close[0]}?" if close else f"; sections: {', '.join(SECTIONS)}")
            )
    leaves = dict(_flatten(raw))
    for dotted, value in leaves.items():
        if keys is not None and not any(dotted == k or dotted.startswith(k + ".") for k in keys):
            continue
        checked_by = schema_key(dotted)
        if checked_by is None:
            close = difflib.get_close_matches(dotted, SCHEMA, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"params.yaml: unknown key {dotted}{hint}")
        set_dotted(clean, dotted, SCHEMA[checked_by](dotted, value))
    for key in keys or []:
        if not any(d == key or d.startswith(key + ".") for d in leaves):
            raise UserError(f"params.yaml: missing key {key} (dvc.yaml declares it)")
        missing = [s for s in expected_keys(key, leaves) if s not in leaves]
        if missing:
            raise UserError(f"params.yaml: missing key {missing[0]}")
    return clean


def expected_keys(prefix, leaves):
    """The keys under `prefix` that SCHEMA asks for, a wildcard's for every user-named part that `leaves` has."""
    expected = []
    for key in SCHEMA:
        if "*" not in key:
            expected += [key] if key.startswith(prefix + ".") else []
            continue
        section, _, rest = key.split(".", 2)
        named = {d.split(".")[1] for d in leaves if d.startswith(section + ".") and d.count(".") >= 2}
        expected += [f"{section}.{name}.{rest}" for name in sorted(named)]
    return [key for key in expected if key == prefix or key.startswith(prefix + ".")]


def declared_keys(stage, dvc_yaml="dvc.yaml", item=None):
    """The params a stage lists in dvc.yaml (for a foreach or matrix stage `name@item`, its template's list, with
    `${key}` and `${item.<name>}` filled in from `item`, e.g. {"key": "lite1"} or {"rung": "lite1"})."""
    stages = read_yaml(dvc_yaml).get("stages", {})
    name = stage.split("@")[0]
    if name not in stages:
        raise UserError(f"dvc.yaml has no stage {name}; stages: {', '.join(stages)}")
    entry = stages[name]
    entry = entry.get("do", entry)
    keys = []
    for listed in entry.get("params", []):
        if isinstance(listed, str):
            keys.append(listed)
        elif isinstance(listed, dict):  # {params.yaml: [keys]}
            for names in listed.values():
                keys.extend(names or [])
    item = item or {}
    return [re.sub(r"\$\{(?:item\.)?(\w+)\}", lambda m: str(item[m.group(1)]), key) for key in keys]


def _first_line(err):
    """ruamel's message in one line: where and what (`line 12: found duplicate key "seed" ...`)."""
    mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"line {mark.line + 1}: {problem}" if mark else problem


# Where a file comes from, not what it holds: read only by the stages that fetch it (download, pretrained), whose
# outputs are content-addressed, and never compared when results of runs are matched.
LOCATIONS = {"download": ("source", "checksum", "inner_checksum"), "model": ("weights",)}  # and ladder.<rung>.weights


# Settings of speed alone: a stage reads them without declaring them in dvc.yaml, so changing one reruns no training
# or evaluation (the report, which lists whole sections to describe the recipes, reruns in a second).
# Loader processes draw nothing of their own (every training draw is seeded per image and epoch), so the number of
# them changes no output.
SPEED_ONLY = ("train.workers", "evaluate.workers")


def with_speed_settings(keys):
    """`keys` and the speed-only settings of the sections they read from."""
    sections = {key.split(".")[0] for key in keys}
    covered = [key for key in SPEED_ONLY if any(key == k or key.startswith(k + ".") for k in keys)]
    return keys + [key for key in SPEED_ONLY if key.split(".")[0] in sections and key not in covered]


def load_params(stage, root=".", item=None):
    """The validated params that `stage` declares in dvc.yaml, read from params.yaml under root (`item`: the values of
    a foreach or matrix stage's template, `declared_keys`).

    Hand-written rather than `dvc.api.params_show(stages=...)`: that opens the whole DVC repository (about a
    second per call), needs one, and returns the keys without the validation this module adds."""
    root = Path(root)
    params_file = root / "params.yaml"
    for needed in (params_file, root / "dvc.yaml"):
        if not needed.exists():
            raise UserError(f"{needed} not found: run stages from the project's top folder")
    try:
        raw = read_yaml(params_file)
    except YAMLError as err:
        raise UserError(f"params.yaml {_first_line(err)}: DVC refuses this file too; fix that line") from None
    if not isinstance(raw, dict) or not all(isinstance(section, dict) for section in raw.values()):
        raise UserError(
            "params.yaml is not sections of keys (`download:`, `split:`, ... each with its keys indented below it): "
            "restore it with `git checkout params.yaml` and change values only"
        )
    return validate(raw, with_speed_settings(declared_keys(stage, root / "dvc.yaml", item)))


def with_rung(params, rung):
    """`params` with model.arch set to the ladder rung's architecture (ladder.<rung>.arch): what a ladder stage runs
    the study's code with."""
    if rung not in params.get("ladder", {}):
        raise UserError(f"params.yaml has no ladder.{rung}: name a rung of the ladder section, or add it there")
    return {**params, "model": {**params.get("model", {}), "arch": params["ladder"][rung]["arch"]}}
