"""The runs DVC knows (the workspace, its commit and their experiments) with their params and metrics, read
through `dvc exp show --json`, for the table computed over several runs (`architectures`)."""

import json
import subprocess
import sys
from pathlib import Path

from ..core.errors import UserError
from ..core.files import read_json
from ..core.params import LOCATIONS


def runs_from_dvc():
    """(params, {metrics file: values}) of the workspace, its commit and every experiment, from `dvc exp show --json`:
    each file's values under its own path (the flat table of `dvc.api.exp_show()` names a column by its file only
    where two files share the name, so a file's values cannot be told from it)."""
    shown = subprocess.run([sys.executable, "-m", "dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if shown.returncode:
        lines = shown.stderr.strip().splitlines() or ["no message"]
        raise UserError(f"dvc exp show failed: {lines[-1]}")
    runs = []
    for commit in json.loads(shown.stdout):
        revisions = [commit] + [rev for exp in commit.get("experiments") or [] for rev in exp.get("revs", [])]
        for data in (rev.get("data") or {} for rev in revisions):
            params = (data.get("params") or {}).get("params.yaml", {}).get("data")
            if params:
                metrics = {path: entry.get("data") or {} for path, entry in (data.get("metrics") or {}).items()}
                runs.append((params, metrics))
    return runs


def leaving_out(params, dropped):
    """`params` without the keys `dropped` ({section: keys}) and without LOCATIONS: what two runs of a table over
    runs must share. A location (where the archive or the weights were read) decides nothing: the stages that read
    it write the same bytes from any path."""
    dropped = {section: (*LOCATIONS.get(section, ()), *dropped.get(section, ())) for section in LOCATIONS | dropped}
    return {
        section: {k: v for k, v in values.items() if k not in dropped.get(section, ())}
        if isinstance(values, dict)
        else values
        for section, values in params.items()
    }


def applies(table, params, compared):
    """Whether a table over runs was computed for these params, as `compared` sees them (without the key the runs
    differ in), on the sections `params` has (a stage that reads only some sections is compared on those)."""
    recorded = compared(table.get("params") or {})  # a table written before a key left the comparison still has it
    wanted = json.loads(json.dumps(compared(params)))
    return all(recorded.get(section) == value for section, value in wanted.items())


def recorded_table(path, params, compared):
    """The table at `path` when it was computed for these params (`applies`), else {}."""
    if not Path(path).exists():
        return {}
    table = read_json(path)
    return table if applies(table, params, compared) else {}
