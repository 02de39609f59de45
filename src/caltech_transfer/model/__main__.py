"""DVC stage `pretrained`: `python -m caltech_transfer.model pretrained`. The backbone weights `model.weights`
names for `model.arch`, fetched (or read) once and written to data/pretrained.pt in one form: the same values from
another path or from the hub give the same bytes, so moving the file reruns this stage and nothing after it."""

import sys

from ..core.cli import cli, stage_arguments
from ..core.layout import PRETRAINED
from ..core.params import load_params
from .checkpoints import write_pretrained


@cli
def main():
    stage_arguments(sys.argv, ("pretrained",))
    m = load_params("pretrained")["model"]
    write_pretrained(m["arch"], m["weights"], PRETRAINED)


if __name__ == "__main__":
    main()
