"""The runs DVC knows (the workspace, its commit and their experiments) with their params and metrics, read
through `dvc.api.exp_show()`, for the tables computed over several runs (`spread`, `architectures`)."""

import ast
import json
from pathlib import Path

from ..core.errors import UserError
from ..core.files import read_json
from ..core.params import LOCATIONS, SCHEMA, set_dotted


def runs_from_dvc():
    """(params, {metrics file: values}) of the workspace, its commit and every experiment, from dvc.api.exp_show().
    Its table flattens each value to a number or a string, which `literal` reads back."""
    import dvc.api  # slow to import, and needed by this command only

    try:
        rows = dvc.api.exp_show()
    except Exception as err:  # DVC raises many kinds (no repository, no Git, a broken experiment ref)
        raise UserError(f"dvc.api.exp_show() failed: {str(err).splitlines()[0]}") from None
    runs = []
    for row in rows:
        params, metrics = {}, {}
        for column, value in row.items():
            name = column.removeprefix("params.yaml:")  # DVC prefixes a name that two files share
            if value is not None and name in SCHEMA:
                set_dotted(params, name, literal(value))
            elif value is not None and column.startswith("metrics/") and ":" in column:
                path, key = column.split(":", 1)
                metrics.setdefault(path, {})[key] = value
        if params:
            runs.append((params, metrics))
    return runs


def literal(value):
    """A value of exp_show's table as params.yaml holds it: 30.0 -> 30, 'None' -> None, 'False' -> False,
    '[0.8, 0.1, 0.1]' -> a list; any other string as it is."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [literal(v) for v in value]
    return value


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
