#!/usr/bin/env bash
# Every GPU check of the project in one run, for a machine with one CUDA GPU (DVC not needed there):
#   1. the CUDA tests (no host wait per training step, checked with CUDA's sync debug mode);
#   2. the speed benchmark on CUDA, the project on its default path there (the device-resident cache);
#   3. the whole default pipeline, each stage's command from dvc.yaml, in a copy of the project, with the offline
#      locations of the README's baseline command. After the feature_extract stages, four lanes run side by side
#      (finetune, scratch, two halves of the learning curve): each row's time is under that shared load;
#   4. the benchmark again with the loader path, then with torch.compile.
# OUTDIR gets each stage's time and peak memory (summary.tsv), the benchmark JSON, every log (logs.tgz, kept up to
# date after each step, so a run cut short still leaves them) and the pipeline's small outputs (results.tgz).
#
#   benchmarks/gpu.sh ARCHIVE WEIGHTS OUTDIR [STEPS]      (STEPS: benchmark batches per timed epoch, default 80)
set -uo pipefail
archive=$(realpath "$1") weights=$(realpath "$2") out=$(realpath -m "$3") steps=${4:-80}
project=$(cd "$(dirname "$0")/.." && pwd)
work=${WORKDIR:-/tmp/caltech-gpu}
python=${PYTHON:-python3}
logs=$work/logs
mkdir -p "$out" "$logs"
export PYTHONPATH="$project/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
started=$EPOCHREALTIME

timed() {  # NAME COMMAND...: output to NAME.log; a line in summary.tsv with the wall time and the stage's own peaks
  local name=$1 tic=$EPOCHREALTIME rc=0
  shift
  "$@" >"$logs/$name.log" 2>&1 || rc=$?
  local seconds peak
  seconds=$(awk "BEGIN {printf \"%.1f\", $EPOCHREALTIME - $tic}")
  peak=$(grep -o 'peak memory.*' "$logs/$name.log" | tail -1)
  printf '%s\t%s s\trc %s\t%s\n' "$name" "$seconds" "$rc" "$peak" | tee -a "$out/summary.tsv"
  tar -czf "$out/logs.$BASHPID" -C "$logs" . && mv "$out/logs.$BASHPID" "$out/logs.tgz"  # lanes write in turn
  return $rc
}

stage() {  # MODULE ARGS...: `python -m caltech_transfer.MODULE ARGS` as dvc.yaml has it, in the work copy (at most 5 min)
  (cd "$work" && timed "$(IFS=_; echo "$*")" timeout 300 "$python" -m "caltech_transfer.$1" "${@:2}")
}

speed() {  # DATA_PATH [--compile]: the benchmark on CUDA
  timed "speed-$1${2:+-compiled}" "$python" "$project/benchmarks/speed.py" --device cuda --data-path "$1" ${2:-} \
    --steps "$steps" --archive "$archive" --workdir "$work/speed" --out "$out/speed-cuda-$1${2:+-compiled}.json"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
"$python" -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)" | tee -a "$out/gpu.txt"

(cd "$project" && timed tests "$python" -m pytest -q -p no:cacheprovider tests/test_device_batches.py)

speed device

cp -r "$project/src" "$project/params.yaml" "$project/dvc.yaml" "$work/"
"$python" - "$work/params.yaml" "$archive" "$weights" <<'EOF'
import sys, yaml  # the README's offline baseline command: only the archive's and the weights' locations differ
path, archive, weights = sys.argv[1:]
params = yaml.safe_load(open(path))
params["download"].update(source=archive, checksum="md5:f527068f45fe3f63acd224f9143196bd",
                          inner_checksum="md5:48d74becb160adb15c07c2376cebfd14")
params["model"]["weights"] = weights
yaml.safe_dump(params, open(path, "w"), sort_keys=False)
EOF
export PYTHONPATH="$work/src"
shots=$("$python" -c "import yaml; print(*yaml.safe_load(open('$work/params.yaml'))['curve']['shots'])")
read -r -a shots <<<"$shots"
half=$(((${#shots[@]} + 1) / 2))

stage data download && stage data split && stage train feature_extract && stage evaluation feature_extract
(stage train finetune; stage evaluation finetune) &
(stage train scratch; stage evaluation scratch) &
(for k in "${shots[@]:0:half}"; do stage evaluation.curve "$k"; done) &
(for k in "${shots[@]:half}"; do stage evaluation.curve "$k"; done) &
wait
stage results plot && stage results report
awk "BEGIN {printf \"pipeline and benchmark: %.0f s\n\", $EPOCHREALTIME - $started}" | tee -a "$out/summary.tsv"
tar -czf "$out/results.tgz" --exclude='*.npy' --exclude='predictions.csv' -C "$work" metrics report plots report.md
speed loader
speed device --compile
