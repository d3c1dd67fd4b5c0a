#!/usr/bin/env bash
# Builds what studies/tradeoff/tradeoff-cpu.toml serves: every model of benchmarks/reproduce.sh as an
# ONNX artifact (the teacher also in int8), each split model with a passage store of the DL19 BM25
# top-100 passages (what the benchmark requests). Trained models come from $RUNS (default runs, the
# layout of benchmarks/reproduce.sh);
# where one is missing, a MiniLM-initialised model of the same shape stands in (latency does not
# depend on the weights). Outputs go to runs/tradeoff/.
#
#   studies/tradeoff/prepare.sh
#   .venv/bin/python -m benchmarks.latency --config studies/tradeoff/tradeoff-cpu.toml --candidates 100 \
#       --concurrency 1 --requests 30 --json studies/tradeoff/results/2026-11-27-latency-cpu.json
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
RUNS=${RUNS:-runs}
R=runs/tradeoff
DL19=data/msmarco-passage/trec-dl-2019
LENGTHS=(--model-query-max-len 32 --model-passage-max-len 160)
mkdir -p $R
# name, source run dir, arch, layers
MODELS=("bert_cat-L6 bert_cat bert_cat 6" "colbert-L6 colbert-L6-kd colbert 6" "colbert-L3 colbert-L3-kd colbert 3"
        "bert_dot-L6 bert_dot-L6-kd bert_dot 6" "bert_dot-L3 bert_dot-L3-kd bert_dot 3" "tk-L6 tk-L6-kd tk 6"
        "prett-L6 prett-L6-kd prett 6")
for spec in "${MODELS[@]}"; do
  read -r name src arch layers <<<"$spec"
  model=$RUNS/$src
  if [[ ! -f $model/manifest.json ]]; then
    model=$R/init-$name
    [[ -f $model/manifest.json ]] || $BIN/reranker init --arch "$arch" --init minilm --layers "$layers" "${LENGTHS[@]}" \
      --no-model-colbert-query-augmentation --out "$model"
  fi
  precisions=(fp32); [[ $arch == bert_cat ]] && precisions=(fp32 int8)
  for p in "${precisions[@]}"; do
    [[ -f $R/onnx-$name-$p/manifest.json ]] || $BIN/reranker export --model "$model" --out "$R/onnx-$name-$p" --precision $p
  done
  if [[ $arch != bert_cat && ! -f $R/store-$name/manifest.json ]]; then
    $BIN/reranker index --artifact "$R/onnx-$name-fp32" --data $DL19 --run bm25 --depth 100 --out "$R/store-$name"
  fi
done
echo "ready: .venv/bin/python -m benchmarks.latency --config studies/tradeoff/tradeoff-cpu.toml"
