"""benchmarks/gpu.sh's dry run: every part of the GPU checks on the CPU with tiny settings, so that the one call a
lent GPU gets cannot fail on a mistake the CPU would have shown."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import PROJECT, SHARED

ZIP = SHARED / "datasets" / "caltech-101.zip"
WEIGHTS = SHARED / "weights" / "tf_efficientnet_lite0_in1k.pth"


@pytest.mark.slow
@pytest.mark.skipif(not (ZIP.exists() and WEIGHTS.exists()), reason="../shared's archive and weights are not here")
def test_the_gpu_script_runs_every_part_on_the_cpu(tmp_path):
    """From a payload laid out as benchmarks/gpu_payload.sh makes it for a GPU call (the archive in parts, the
    weights; the wheels it adds need the registry, so not here)."""
    payload, out = tmp_path / "payload", tmp_path / "out"
    payload.mkdir()
    archive = ZIP.read_bytes()
    for index, start in enumerate(range(0, len(archive), 45 << 20)):
        (payload / f"caltech-101.zip.part-a{'abcdefgh'[index]}").write_bytes(archive[start : start + (45 << 20)])
    shutil.copy(WEIGHTS, payload / "weights.pth")
    result = subprocess.run(
        ["bash", "benchmarks/gpu.sh", "--device", "cpu", "--tiny", "--payload", str(payload), "--out", str(out)],
        cwd=PROJECT,
        env={**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = {line.split("\t")[0]: line.split("\t") for line in (out / "summary.tsv").read_text().splitlines()}
    parts = {"tests", "speed-resnet18-device", "speed-resnet18-loader", "speed-lite0-device", "pipeline", "all"}
    assert parts <= set(rows)
    stages = [name for name in rows if name.startswith(("pipeline-", "scratch-gpu-"))]
    assert {"pipeline-data.download", "pipeline-results_report_0", "scratch-gpu-evaluation_scratch_0"} <= set(stages)
    assert all(rows[name][2] in ("0", "") for name in rows), rows
    for name in ("env.txt", "logs.tgz", "results.tgz", "speed-cpu-lite0-device.json"):
        assert (out / name).stat().st_size > 0, name
    scratch = json.loads((out / "scratch-gpu.json").read_text())
    assert scratch["recipe"] == {"input_size": None, "epochs": 1} and scratch["test"]["top1_accuracy"] >= 0
