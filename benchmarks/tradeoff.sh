#!/usr/bin/env bash
# The efficiency-effectiveness table and plot of the README: the latency of one run of
# benchmarks/latency.py (MiniLM-shaped models; latency does not depend on the weights) joined with the
# DL19 figures of benchmarks/reproduce.sh's runs. Models without results yet are left out; models the
# latency run does not serve (3-layer students, PreTT) get no latency.
#
#   .venv/bin/python -m benchmarks.latency --json benchmarks/results/latency-cpu.json
#   RUNS=runs benchmarks/tradeoff.sh      # writes benchmarks/results/tradeoff.{md,json,png}
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
RUNS=${RUNS:-runs}
LATENCY=${LATENCY:-benchmarks/results/latency-cpu.json}
BENCH=${BENCH:-$(ls -d runs/bench-latency/minilm-* 2>/dev/null | head -1)}
dl19() { for f in "$1/trec-dl-2019-bm25.json" "$1/dl19-bm25.json"; do [[ -f $f ]] && { echo "$f"; return 0; }; done; return 0; }
args=(--alias bert_cat-L6=teacher --alias bert_cat-L6-int8=teacher-int8 --alias colbert-L6=colbert
      --alias bert_dot-L6=bert-dot --alias tk-L6=tk)
f=$(dl19 "$RUNS/bert_cat"); [[ -n $f ]] && args+=(--eval "bert_cat-L6=$f")
# the int8 teacher's quality: a benchmarks/precision.py result of the same teacher (INT8_EVAL=FILE)
[[ -n ${INT8_EVAL:-} ]] && args+=(--eval "bert_cat-L6-int8=$INT8_EVAL#ort int8")
for name in colbert-L6 colbert-L3 bert_dot-L6 bert_dot-L3 tk-L6 prett-L6; do
  f=$(dl19 "$RUNS/$name-kd"); [[ -n $f ]] || continue
  args+=(--eval "$name=$f")
  store=$(ls -d "$BENCH"/store-"${name%-L*}"-* 2>/dev/null | head -1)
  [[ -n $store && $name == *-L6 ]] && args+=(--store "$name=$store")
done
$BIN/python -m benchmarks.tradeoff --latency "$LATENCY" "${args[@]}" --bm25 "$(dl19 "$RUNS/first-stage")" \
  --reference "ensemble teacher=$(dl19 "$RUNS/ensemble")" --teacher bert_cat-L6 --out benchmarks/results/tradeoff
