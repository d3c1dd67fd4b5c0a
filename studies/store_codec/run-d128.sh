#!/usr/bin/env bash
# The 128-d ColBERT student (a projection as in the paper) through its served store: nDCG@10 of the
# 1-bit (18 bytes a token) and 2-bit (34 bytes) residual stores against its own fp16 store, on DL19 and
# DL21 (BM25 top 100), and the 100-candidate p50 of each store in process.
#   studies/store_codec/run-d128.sh [MODEL] [WORK]     # MODEL: the campaign's runs/colbert-L6-d128-kd
set -euo pipefail
cd "$(dirname "$0")/../.."
M=${1:-runs/colbert-L6-d128-kd}; W=${2:-runs/codec-d128}; BIN=${BIN:-.venv/bin}
T=data/msmarco-passage
[[ -s $W/onnx/manifest.json ]] || $BIN/reranker export --model "$M" --out "$W/onnx"
evals=()
for y in 2019 2021; do
  s=$W/store-dl${y:2}-fp16
  [[ -s $s/manifest.json ]] || $BIN/reranker index --artifact "$W/onnx" --data $T/trec-dl-$y --run bm25 --depth 100 \
    --dtype float16 --out "$s"
  evals+=(--eval "dl${y:2}=$T/trec-dl-$y:$s")
done
$BIN/python -m studies.store_codec --artifact "$W/onnx" "${evals[@]}" --codec residual:1:1024 --codec residual:2:1024 \
  --latency-requests 40 --json "studies/store_codec/results/$(date -u +%F)-colbert-d128-cpu.json"
# The query encoder in int8 (ONNX Runtime dynamic, per channel) against fp32, on the 1-bit DL19 store
# (the passage encoders are the same graph: one store serves both); request path and stages as
# benchmarks/colbert_path.py measures them
[[ -s $W/onnx-int8-query/manifest.json ]] || $BIN/reranker export --model "$M" --out "$W/onnx-int8-query" --precision int8-query
for a in onnx onnx-int8-query; do
  $BIN/python -m benchmarks.colbert_path --artifact "$W/$a" --store "$W/store-dl19-fp16-residual-1-1024" --rounds 2 \
    --json "benchmarks/results/colbert-path-d128${a#onnx}-cpu.json"
done
