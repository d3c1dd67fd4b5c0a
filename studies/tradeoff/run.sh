#!/usr/bin/env bash
# The efficiency-effectiveness table and plot of the README: the latency of one run of
# benchmarks/latency.py (MiniLM-shaped models; latency does not depend on the weights) joined with the
# DL19 figures of benchmarks/reproduce.sh's runs. Models without results yet are left out and named on
# stderr; models the latency run does not serve (3-layer students, PreTT) get no latency. A missing
# latency record, BM25 run or ensemble result is an error.
#
#   .venv/bin/python -m benchmarks.latency --json benchmarks/results/latency-cpu.json
#   RUNS=runs studies/tradeoff/run.sh      # writes studies/tradeoff/results/DATE-tradeoff.{md,json,png}
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
RUNS=${RUNS:-runs}
LATENCY=${LATENCY:-benchmarks/results/latency-cpu.json}
BENCH=${BENCH:-$(ls -d runs/bench-latency/minilm-* 2>/dev/null | head -1)}
args=(--alias bert_cat-L6=teacher --alias bert_cat-L6-int8=teacher-int8 --alias colbert-L6=colbert
      --alias bert_dot-L6=bert-dot --alias tk-L6=tk)
[[ -f $RUNS/bert_cat/trec-dl-2019-bm25.json ]] && args+=(--eval "bert_cat-L6=$RUNS/bert_cat/trec-dl-2019-bm25.json" \
  --heldout "bert_cat-L6=$RUNS/bert_cat/trec-dl-2021-bm25.json")
for f in "$LATENCY" "$RUNS/first-stage/trec-dl-2019-bm25.json" "$RUNS/ensemble/trec-dl-2019-bm25.json"; do
  [[ -f $f ]] || { echo "tradeoff: $f is missing (see the comment at the top of $0)" >&2; exit 1; }
done
left_out=()
[[ -f $RUNS/bert_cat/trec-dl-2019-bm25.json ]] || left_out+=(bert_cat-L6)
# the int8 teacher: .venv/bin/python -m studies.precision --model runs/bert_cat --precisions fp32,int8 \
#   --json studies/precision/results/$(date +%F)-bert_cat.json   (the newest such record is used)
int8=$(ls studies/precision/results/*-bert_cat.json 2>/dev/null | tail -1 || true)
if [[ -n $int8 ]]; then args+=(--eval "bert_cat-L6-int8=$int8#ort int8"); else left_out+=(bert_cat-L6-int8); fi
for name in colbert-L6 colbert-L3 bert_dot-L6 bert_dot-L3 tk-L6 prett-L6; do
  f=$RUNS/$name-kd/trec-dl-2019-bm25.json
  [[ -f $f ]] || { left_out+=("$name"); continue; }
  args+=(--eval "$name=$f" --heldout "$name=$RUNS/$name-kd/trec-dl-2021-bm25.json")
  store=$(ls -d "$BENCH"/store-"${name%-L*}"-* 2>/dev/null | head -1 || true)
  if [[ -n $store && $name == *-L6 ]]; then args+=(--store "$name=$store"); fi
done
[[ ${#left_out[@]} -eq 0 ]] || echo "tradeoff: left out (no DL19 result yet): ${left_out[*]}" >&2
$BIN/python -m studies.tradeoff --latency "$LATENCY" "${args[@]}" --bm25 "$RUNS/first-stage/trec-dl-2019-bm25.json" \
  --reference "ensemble teacher=$RUNS/ensemble/trec-dl-2019-bm25.json" --teacher bert_cat-L6 --out "studies/tradeoff/results/$(date +%F)-tradeoff"
