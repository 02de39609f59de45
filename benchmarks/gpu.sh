#!/usr/bin/env bash
# Every GPU check of the project in one run, each part stopped at its time limit and the next one started, a
# summary table last; everything under one folder (OUT):
#   tests       the CUDA tests (pytest -m cuda): host waits per step, fp16 with the grad scaler, torch.compile;
#   speed-*     benchmarks/speed.py: ResNet-18 224 px batch 32 on the device path and on the loader path, and the
#               default Lite0 recipe (256 px, batch 32) on the device path;
#   pipeline    the whole default pipeline from the archive to report.md, each stage's command from dvc.yaml in a
#               copy of the project (DVC itself is not needed), timed per stage; after feature extraction, lanes run
#               side by side (fine-tuning, scratch, the learning curve), each stage's time under that shared load;
#   scratch-gpu the GPU scratch recipe (the weights' input size, 150 epochs) on split seed 0, as a lane of its own.
# OUT gets summary.tsv (part or stage, seconds, exit status, peak memory), env.txt (GPU, driver, torch), the speed
# JSONs, scratch-gpu.json, logs.tgz (every log, kept up to date as parts end) and results.tgz (the pipeline's small
# outputs and report.md).
#
#   benchmarks/gpu.sh [--device cuda|cpu] [--tiny] [--archive ZIP] [--weights FILE] [--payload DIR] [--out DIR]
#
# --device cpu --tiny is the dry run: every part on the CPU with tiny settings, in a few minutes, writing the same
# files (tests/test_gpu_script.py runs it). --payload: the archive in parts, the weights and the wheels of what the
# GPU machine lacks, as benchmarks/gpu_payload.sh lays them out (a call carries at most 64 MiB); the wheels are
# installed into a virtual environment over the machine's own packages. Defaults: cuda, the real archive and Lite0
# weights in ../shared, OUT benchmarks/results/gpu-<device>[-tiny].
set -uo pipefail
project=$(cd "$(dirname "$0")/.." && pwd)
device=cuda tiny=0 payload=
archive=$project/../shared/datasets/caltech-101.zip
weights=$project/../shared/weights/tf_efficientnet_lite0_in1k.pth
out=
while [ $# -gt 0 ]; do
  case $1 in
    --device) device=$2; shift 2 ;;
    --tiny) tiny=1; shift ;;
    --archive) archive=$2; shift 2 ;;
    --weights) weights=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --payload) payload=$2; shift 2 ;;
    *) echo "error: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
case $device in cuda|cpu) ;; *) echo "error: --device is cuda or cpu, not $device" >&2; exit 2 ;; esac
work=$(mktemp -d "${TMPDIR:-/tmp}/caltech-gpu.XXXXXX")
python=${PYTHON:-python3}
if [ -n "$payload" ]; then
  cat "$payload"/caltech-101.zip.part-* >"$work/caltech-101.zip" && archive=$work/caltech-101.zip
  weights=$payload/weights.pth
  if [ -d "$payload/wheels" ]; then  # the GPU machine has torch, timm and the rest, not DVCLive and ruamel.yaml:
    "$python" -m pip install -q --no-index --no-deps --no-compile --target "$work/site" "$payload"/wheels/*.whl ||
      exit 1  # they come last on the path (sitecustomize), so the machine's own torch, numpy, ... stay first
    mkdir -p "$work/last" && echo "import sys; sys.path.append('$work/site')" >"$work/last/sitecustomize.py"
    export PYTHONPATH="$work/last${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
for file in "$archive" "$weights"; do
  [ -f "$file" ] || { echo "error: $file not found: give --archive and --weights" >&2; exit 2; }
done
archive=$(realpath "$archive") weights=$(realpath "$weights")
out=$(realpath -m "${out:-$project/benchmarks/results/gpu-$device$([ $tiny = 1 ] && echo -tiny)}")
logs=$work/logs
mkdir -p "$out" "$logs"
rm -f "$out/summary.tsv"
export PYTHONUNBUFFERED=1 PYTHONPATH="$project/src${PYTHONPATH:+:$PYTHONPATH}"
# Time limits in seconds: the parts fit in 10 minutes on one GPU; the dry run's in a few on 2 CPU cores.
if [ $tiny = 1 ]; then
  limit_tests=400 limit_speed=300 limit_stage=300 speed_args=(--steps 2 --repeats 1 --batch 4) sizes=(32 32)
else
  limit_tests=90 limit_speed=60 limit_stage=240 speed_args=(--steps 80 --repeats 2 --batch 32) sizes=(224 256)
fi
started=$EPOCHREALTIME

timed() {  # NAME LIMIT COMMAND...: output to NAME.log, a line in summary.tsv; the stage's peak memory if it says
  local name=$1 limit=$2 tic=$EPOCHREALTIME rc=0
  shift 2
  timeout "$limit" "$@" >"$logs/$name.log" 2>&1 || rc=$?
  local seconds peak
  seconds=$(awk "BEGIN {printf \"%.1f\", $EPOCHREALTIME - $tic}")
  peak=$(grep -o 'peak memory.*' "$logs/$name.log" | tail -1)
  [ $rc = 124 ] && peak="stopped at its limit of $limit s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$seconds" "$rc" "$peak" >>"$out/summary.tsv"
  tar -czf "$out/logs.$BASHPID" -C "$logs" . && mv "$out/logs.$BASHPID" "$out/logs.tgz"  # lanes write in turn
  return $rc
}

stage() {  # COPY MODULE ARGS...: `python -m caltech_transfer.MODULE ARGS` as dvc.yaml runs it, in a copy
  local copy=$1
  shift
  (cd "$copy" && PYTHONPATH="$copy/src${PYTHONPATH:+:$PYTHONPATH}" \
    timed "$(basename "$copy")-$(IFS=_; echo "$*")" "$limit_stage" "$python" -m "caltech_transfer.$1" "${@:2}")
}

speed() {  # NAME ARCH SIZE DATA_PATH: the benchmark on the device
  timed "speed-$1" "$limit_speed" "$python" "$project/benchmarks/speed.py" --device "$device" --arch "$2" --size "$3" \
    --data-path "$4" "${speed_args[@]}" --archive "$archive" --workdir "$work/speed" --out "$out/speed-$device-$1.json"
}

copy_project() {  # NAME PARAM=VALUE...: a copy of the project with the README's offline params, these overrides
  local copy=$work/$1
  shift
  mkdir -p "$copy" && cp -r "$project/src" "$project/params.yaml" "$project/dvc.yaml" "$copy/"
  "$python" - "$copy/params.yaml" "$archive" "$weights" "$tiny" "$@" <<'EOF'
import sys

import yaml

path, archive, weights, tiny, *overrides = sys.argv[1:]
params = yaml.safe_load(open(path))
settings = {  # the README's offline command on one split seed: only the archive's and the weights' locations differ
    "study.seeds": [0],
    "curve.seeds": [0],
    "ladder": {},  # the ladder's rungs are the study's stages with other weights: not part of the GPU check
    "download.source": archive,
    "download.checksum": "md5:f527068f45fe3f63acd224f9143196bd",
    "download.inner_checksum": "md5:48d74becb160adb15c07c2376cebfd14",
    "model.weights": weights,
}
if tiny == "1":  # a few images of each class, small images, an epoch or two: every code path, in minutes
    settings.update({
        "split.train_per_class": 3, "split.val_per_class": 1, "split.test_per_class": 2, "cache.image_size": 64,
        "model.input_size": 64, "train.finetune.epochs": 1, "train.feature_extract.epochs": 2,
        "train.scratch.epochs": 1, "train.scratch.input_size": 32, "curve.shots": [1],
        "plot.embedding": "pca", "plot.embedding_points": 100,
    })
for item in overrides:
    key, value = item.split("=", 1)
    settings[key] = yaml.safe_load(value)
for dotted, value in settings.items():
    *parents, leaf = dotted.split(".")
    node = params
    for part in parents:
        node = node[part]
    node[leaf] = value
yaml.safe_dump(params, open(path, "w"), sort_keys=False)
EOF
}

{
  if [ "$device" = cuda ]; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  else grep -m1 'model name' /proc/cpuinfo; fi
  "$python" -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__)"
} >"$out/env.txt" 2>&1
cat "$out/env.txt"

(cd "$project" && CUDA_TESTS_ON=$device timed tests "$limit_tests" "$python" -m pytest -q -p no:cacheprovider -m cuda tests)
speed resnet18-device resnet18 "${sizes[0]}" device
speed resnet18-loader resnet18 "${sizes[0]}" loader
speed lite0-device timm/tf_efficientnet_lite0 "${sizes[1]}" device

copy_project pipeline
copy_project scratch-gpu train.scratch.input_size=null train.scratch.epochs=$([ $tiny = 1 ] && echo 1 || echo 150)
shots=$("$python" -c "import yaml; print(*yaml.safe_load(open('$work/pipeline/params.yaml'))['curve']['shots'])")
read -r -a shots <<<"$shots"
pipeline=$work/pipeline scratch=$work/scratch-gpu
tic=$EPOCHREALTIME
lanes() {  # after the data stages: the GPU scratch recipe beside the pipeline's stages, in lanes, on split seed 0
  (stage "$scratch" train scratch 0 && stage "$scratch" evaluation scratch 0) &
  local scratch_lane=$!
  if stage "$pipeline" train feature_extract 0 && stage "$pipeline" evaluation feature_extract 0; then
    (stage "$pipeline" train finetune 0 && stage "$pipeline" evaluation finetune 0) &
    local finetune_lane=$!
    (stage "$pipeline" train scratch 0 && stage "$pipeline" evaluation scratch 0) &
    local scratch_cpu_recipe_lane=$!
    (for k in "${shots[@]}"; do stage "$pipeline" evaluation.curve "$k" 0 || exit; done)
    wait $finetune_lane $scratch_cpu_recipe_lane
    stage "$pipeline" results.spread && stage "$pipeline" results.ladder && stage "$pipeline" results plot 0 &&
      stage "$pipeline" results report 0
  fi
  wait $scratch_lane
}
stage "$pipeline" data.download && stage "$pipeline" data.cache && stage "$pipeline" data.split 0 &&
  stage "$pipeline" model pretrained && stage "$pipeline" train.features && ln -s "$pipeline/data" "$scratch/data" &&
  lanes
awk "BEGIN {printf \"pipeline\t%.1f\t%s\tfrom the archive to report.md\n\", $EPOCHREALTIME - $tic, \
  $([ -f "$pipeline/report.md" ] && echo 0 || echo 1)}" >>"$out/summary.tsv"
tar -czf "$out/results.tgz" --exclude='*.npy' --exclude='predictions.csv' -C "$pipeline" metrics report plots report.md
"$python" - "$scratch" "$out/scratch-gpu.json" <<'EOF'
import json, pathlib, sys
import yaml

run, out = pathlib.Path(sys.argv[1]), sys.argv[2]
read = lambda name: json.loads((run / name).read_text()) if (run / name).exists() else None
params = yaml.safe_load((run / "params.yaml").read_text())["train"]["scratch"]
result = {"recipe": {"input_size": params["input_size"], "epochs": params["epochs"]},
          "train": read("metrics/scratch/train/metrics.json"), "test": read("metrics/scratch/test.json")}
pathlib.Path(out).write_text(json.dumps(result, indent=2) + "\n")
EOF
awk "BEGIN {printf \"all\t%.1f\t\t\n\", $EPOCHREALTIME - $started}" >>"$out/summary.tsv"
tar -czf "$out/logs.tgz" -C "$logs" .
rm -rf "$work"
echo
column -t -s $'\t' "$out/summary.tsv"
! cut -f3 "$out/summary.tsv" | grep -qv '^0\?$'  # the script's status: 0 when every part and stage ended with 0
