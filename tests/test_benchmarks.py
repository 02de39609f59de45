"""The benchmarks run as the README and docs show them, on tiny settings, so that a change of the code they call
cannot break them unseen. They report figures; nothing here checks a speed."""

import json
import subprocess
import sys

import pytest

from conftest import PROJECT, SHARED

ZIP = SHARED / "datasets" / "caltech-101.zip"


@pytest.mark.slow
@pytest.mark.skipif(not ZIP.exists(), reason="../shared/datasets/caltech-101.zip is not here")
def test_the_speed_benchmark_runs_to_its_table(tmp_path):
    out = tmp_path / "speed.json"
    result = subprocess.run(
        [sys.executable, "benchmarks/speed.py", "--steps", "2", "--repeats", "1", "--batch", "4", "--size", "64"]
        + ["--out", str(out), "--archive", str(ZIP)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "project / compute" in result.stdout
    report = json.loads(out.read_text())
    assert set(report["images_per_second"]) == {"seeds", "project", "compute", "data"}
    assert all(speed > 0 for way in report["images_per_second"].values() for speed in way.values())
