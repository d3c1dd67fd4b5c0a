#!/usr/bin/env bash
# The latency benchmark on a CUDA machine with no network, in one go (< 10 minutes on one GPU):
#   1. wheels: every *.part-NN set in $WHEELS is joined back into its wheel (onnxruntime-gpu is a
#      ~255 MB wheel: benchmarks/gpu/pack.sh cuts it into parts of at most 60 MB), checked against
#      $WHEELS/SHA256SUMS, and installed with pip --no-index from $WHEELS only;
#   2. the teacher (fp32) and the students (ColBERT, BERT-dot, TK from their stores) on the CUDA
#      provider through benchmarks.latency (its own server; models built and cached under $WORK);
#   3. the same JSON as the CPU benchmark in $OUT/latency-$PROVIDER.json (machine.gpu names the GPU).
#
#   WHEELS=/path/to/wheels OUT=/tmp/out benchmarks/gpu/run.sh
#   PROVIDER=cpu SKIP_INSTALL=1 benchmarks/gpu/run.sh     # the CPU fallback (what tests/test_gpu_script.py runs)
#
# Extra arguments go to benchmarks.latency (e.g. --base DIR --data DIR in the test).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || echo python3 )}
PROVIDER=${PROVIDER:-cuda}
WHEELS=${WHEELS:-benchmarks/gpu/wheels}
OUT=${OUT:-runs/gpu}
WORK=${WORK:-runs/bench-latency-$PROVIDER}
BATCH=${BATCH:-$( [[ $PROVIDER == cuda ]] && echo 128 || echo 16 )}
mkdir -p "$OUT"
if [[ -z "${SKIP_INSTALL:-}" ]]; then
  shopt -s nullglob
  for first in "$WHEELS"/*.part-00; do
    whl=${first%.part-00}
    if [[ ! -f $whl ]]; then cat "$whl".part-* > "$whl.tmp" && mv "$whl.tmp" "$whl"; fi
  done
  if [[ -f $WHEELS/SHA256SUMS ]]; then (cd "$WHEELS" && sha256sum --check --quiet SHA256SUMS); fi
  wheels=("$WHEELS"/*.whl)
  if (( ${#wheels[@]} )); then "$PY" -m pip install --no-index --find-links "$WHEELS" "${wheels[@]}"; fi
fi
if [[ $PROVIDER == cuda ]]; then
  "$PY" -c "import onnxruntime as o, sys; p = o.get_available_providers(); print('providers', p); \
sys.exit(0 if 'CUDAExecutionProvider' in p else 'onnxruntime-gpu with CUDAExecutionProvider is needed')"
fi
timeout 540 "$PY" -m benchmarks.latency --provider "$PROVIDER" --batch-size "$BATCH" --archs bert_cat,colbert,bert_dot,tk \
  --precisions fp32 --candidates 100,1000 --concurrency 1,4 --requests 20 --cell-seconds 8 --rounds 8 \
  --queries 10 --work "$WORK" --json "$OUT/latency-$PROVIDER.json" "$@"
echo "wrote $OUT/latency-$PROVIDER.json"
