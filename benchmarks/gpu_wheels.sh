#!/usr/bin/env bash
# Wheels of what the GPU machine lacks (DVCLive, which the training stages log with, and ruamel.yaml, which reads the
# params), for its Python 3.12 on x86-64, made where pip reaches the registry: the packages and versions this
# environment has installed for them, each fetched as a 3.12 wheel, or built here where the registry has no wheel
# (pure-Python source packages). benchmarks/gpu.sh --wheels DIR installs them there into a virtual environment over
# the machine's own packages, so its torch, timm and numpy stay.
#
#   benchmarks/gpu_wheels.sh DIR
set -euo pipefail
dir=$(realpath -m "${1:?usage: $0 DIR}")
mkdir -p "$dir"
platforms=()
for tag in manylinux_2_34 manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${tag}_x86_64")
done
python - dvclive ruamel.yaml <<'EOF' | while read -r requirement; do
import sys
from importlib.metadata import distribution
from packaging.requirements import Requirement

todo, seen = list(sys.argv[1:]), {}
while todo:  # the installed distributions these need, with what they need in turn
    name = todo.pop()
    dist = distribution(name)
    key = dist.metadata["Name"].lower().replace("_", "-")
    if key in seen:
        continue
    seen[key] = dist.version
    for text in dist.requires or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            todo.append(requirement.name)
print("\n".join(f"{name}=={version}" for name, version in sorted(seen.items())))
EOF
  pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d "$dir" "$requirement" 2>/dev/null || pip wheel -q --no-deps -w "$dir" "$requirement"
done
du -sh "$dir"
