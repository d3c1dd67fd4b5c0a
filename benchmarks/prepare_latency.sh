#!/usr/bin/env bash
# Builds what benchmarks/configs/latency-cpu.toml serves: the BERT-cat teacher (fp32 and int8), the
# ColBERT student with a passage store of the DL19 passages, and the same ColBERT without a store
# (passages encoded at query time). Outputs go to runs/latency/.
#
#   TEACHER=runs/full/teacher STUDENT=runs/full/colbert-L6-kd benchmarks/prepare_latency.sh
#
# Without TEACHER / STUDENT, MiniLM-initialised models stand in: latency does not depend on training.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
R=runs/latency
DL19=data/msmarco-passage/trec-dl-2019
mkdir -p $R
if [[ -n "${TEACHER:-}" ]]; then T=$TEACHER; else
  T=$R/teacher; [[ -f $T/manifest.json ]] || $BIN/reranker init --arch bert_cat --init minilm --out $T; fi
if [[ -n "${STUDENT:-}" ]]; then S=$STUDENT; else
  S=$R/colbert; [[ -f $S/manifest.json ]] || $BIN/reranker init --arch colbert --init minilm \
    --no-model-colbert-query-augmentation --out $S; fi
for p in fp32 int8; do
  [[ -f $R/onnx-teacher-$p/manifest.json ]] || $BIN/reranker export --model $T --out $R/onnx-teacher-$p --precision $p
done
[[ -f $R/onnx-colbert-fp32/manifest.json ]] || $BIN/reranker export --model $S --out $R/onnx-colbert-fp32
[[ -f $R/store-colbert-fp32/manifest.json ]] || $BIN/reranker index --artifact $R/onnx-colbert-fp32 --data $DL19 \
  --out $R/store-colbert-fp32
echo "ready: .venv/bin/python -m benchmarks.latency --config benchmarks/configs/latency-cpu.toml --peer-cross-encoder $T"
