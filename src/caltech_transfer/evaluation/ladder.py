"""DVC stages `ladder_feature_extract@<rung>-<seed>` and `ladder_finetune@<rung>`:
`python -m caltech_transfer.evaluation.ladder <mode> <rung> <split seed>` trains `mode` with the ladder rung's backbone
(ladder.<rung>.arch, its weights fetched by `ladder_pretrained@<rung>`, its features by `ladder_features@<rung>`) on
that split by the study's recipe, and scores it on the test split: feature extraction on every split seed, fine-tuning
(from that head) on the first."""

import sys

from ..core.cli import cli, stage_arguments
from ..core.layout import STUDY_MODES, rung_run
from ..core.params import load_params, with_rung
from ..train.engine import train
from .evaluate import evaluate

STAGES = {mode: f"ladder_{mode}" for mode in STUDY_MODES}


@cli
def main():
    mode, rung, seed = stage_arguments(sys.argv, STUDY_MODES, str, int)
    params = with_rung(load_params(STAGES[mode], item={"rung": rung}), rung)
    paths = rung_run(rung, mode, seed)
    train(mode, params, paths)
    evaluate(paths.checkpoint, mode, paths, params["runtime"], **params["evaluate"])


if __name__ == "__main__":
    main()
