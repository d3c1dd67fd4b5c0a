#!/usr/bin/env bash
# Cuts wheels into parts of at most 60 MB for benchmarks/gpu/run.sh, with their SHA256SUMS:
#   .venv/bin/pip download --no-deps --only-binary :all: onnxruntime-gpu -d /tmp/w && benchmarks/gpu/pack.sh /tmp/w/*.whl OUT_DIR
set -euo pipefail
out=${@: -1}
mkdir -p "$out"
for whl in "${@:1:$#-1}"; do
  name=$(basename "$whl")
  (cd "$(dirname "$whl")" && sha256sum "$name") >> "$out/SHA256SUMS"
  split --bytes=60M --numeric-suffixes=0 --suffix-length=2 "$whl" "$out/$name.part-"
done
ls -la "$out"
