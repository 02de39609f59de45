"""DVC stages `pretrained` and `ladder_pretrained@<rung>`: `python -m caltech_transfer.model pretrained [<rung>]`.
The backbone weights `model.weights` (or `ladder.<rung>.weights`) names for its architecture, fetched (or read) once
and written to data/pretrained.pt (data/ladder/<rung>/pretrained.pt) in one form: the same values from another path or
from the hub give the same bytes, so moving the file reruns this stage and nothing after it."""

import sys

from ..core.cli import cli, stage_arguments
from ..core.layout import PRETRAINED, rung_weights
from ..core.params import load_params, with_rung
from .checkpoints import write_pretrained


@cli
def main():
    if len(sys.argv) == 2:
        stage_arguments(sys.argv, ("pretrained",))
        m = load_params("pretrained")["model"]
        write_pretrained(m["arch"], m["weights"], PRETRAINED)
        return
    _, rung = stage_arguments(sys.argv, ("pretrained",), str)
    params = load_params("ladder_pretrained", item={"key": rung})
    write_pretrained(with_rung(params, rung)["model"]["arch"], params["ladder"][rung]["weights"], rung_weights(rung)[0])


if __name__ == "__main__":
    main()
