#!/usr/bin/env bash
# What a call of a lent GPU machine needs besides the checkout, in a folder of it that git ignores (each call
# carries at most 64 MiB, so the payload travels in parts, one call each, while the machine stays warm):
#   DIR/caltech-101.zip.part-aa, -ab, ...  the archive in 45 MB parts (benchmarks/gpu.sh --payload joins them)
#   DIR/weights.pth                        the Lite0 ImageNet weights
#   DIR/wheels/                            what the GPU machine lacks for its Python 3.12 on x86-64: DVCLive (the
#                                          training stages log with it) and ruamel.yaml (the params), with the
#                                          packages and versions this environment has for them, each a 3.12 wheel,
#                                          or built here where the registry has none (pure-Python source packages)
# It prints which paths to carry in which call.
#
#   benchmarks/gpu_payload.sh DIR [ARCHIVE [WEIGHTS]]      (defaults: ../shared's)
set -euo pipefail
project=$(cd "$(dirname "$0")/.." && pwd)
dir=$(realpath -m "${1:?usage: $0 DIR [ARCHIVE [WEIGHTS]]}")
archive=${2:-$project/../shared/datasets/caltech-101.zip}
weights=${3:-$project/../shared/weights/tf_efficientnet_lite0_in1k.pth}
mkdir -p "$dir/wheels"
rm -f "$dir"/caltech-101.zip.part-*
split -b 45M "$archive" "$dir/caltech-101.zip.part-"
cp "$weights" "$dir/weights.pth"
platforms=()
for tag in manylinux_2_34 manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${tag}_x86_64")
done
python - dvclive ruamel.yaml <<'PY' | while read -r requirement; do
import sys
from importlib.metadata import distribution

from packaging.requirements import Requirement

todo, seen = list(sys.argv[1:]), {}
while todo:  # the installed distributions these need, with what they need in turn
    dist = distribution(todo.pop())
    key = dist.metadata["Name"].lower().replace("_", "-")
    if key in seen:
        continue
    seen[key] = dist.version
    for text in dist.requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            todo.append(requirement.name)
print("\n".join(f"{name}=={version}" for name, version in sorted(seen.items())))
PY
  pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d "$dir/wheels" "$requirement" 2>/dev/null || pip wheel -q --no-deps -w "$dir/wheels" "$requirement"
done
rel=$(realpath --relative-to="$project" "$dir")
echo "carry one call each (the machine keeps them while warm; the last call runs the checks):"
for part in "$dir"/caltech-101.zip.part-*; do echo "  $rel/$(basename "$part")"; done
echo "  $rel/weights.pth $rel/wheels, then: benchmarks/gpu.sh --payload $rel"
du -sh "$dir"/* | sed 's/^/  /'
