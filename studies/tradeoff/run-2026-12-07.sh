#!/usr/bin/env bash
# The trade-off table and plot of 2026-12-07 (README "Results"): one run of benchmarks/latency.py joined with
# the DL19 / DL21 evaluations of the trained models at hand: the training campaign's
# BERT-cat teacher after its 6,000 Margin-MSE steps, the shipped default ColBERT student and its zero-shot
# start (the campaign's students are not trained yet; BERT-dot and TK have a latency but no trained model).
#   .venv/bin/python -m benchmarks.latency --cell-seconds 6 --requests 40 --text-max-concurrency 4 \
#       --json studies/tradeoff/results/2026-12-07-latency-cpu.json
#   cp -r runs/bert_cat-margins runs/teacher-6000     # config.json, manifest.json, model.safetensors, tokenizer.json
#   for s in trec-dl-2019 trec-dl-2021; do
#     .venv/bin/reranker evaluate --model runs/teacher-6000 --data data/msmarco-passage/$s --run bm25 --threads 2 --json ...
#     .venv/bin/reranker evaluate --model default --data data/msmarco-passage/$s --run bm25 --threads 2 --json ...
#   done                                              # kept in studies/tradeoff/results/2026-12-07-inputs/
set -euo pipefail
cd "$(dirname "$0")/../.."
I=studies/tradeoff/results/2026-12-07-inputs
T="teacher (BERT-cat, campaign)"; D="ColBERT-L6 default"; Z="ColBERT-L6 zero-shot"
STORE=$(ls -d runs/bench-latency/minilm-*/store-colbert-residual1-* | head -1)
.venv/bin/python -m studies.tradeoff --latency studies/tradeoff/results/2026-12-07-latency-cpu.json \
  --alias "$T=teacher" --alias "$D=colbert" --alias "$Z=colbert" \
  --eval "$T=$I/teacher-dl19.json" --heldout "$T=$I/teacher-dl21.json" \
  --eval "$D=$I/default-dl19.json" --heldout "$D=$I/default-dl21.json" --store "$D=$STORE" \
  --eval "$Z=campaign/members/zs-colbert/trec-dl-2019-bm25.json" --heldout "$Z=campaign/members/zs-colbert/trec-dl-2021-bm25.json" \
  --bm25 campaign/first-stage/trec-dl-2019-bm25.json --reference "ensemble teacher (3 members)=campaign/ensemble/trec-dl-2019-bm25.json" \
  --teacher "$T" --out studies/tradeoff/results/2026-12-07-tradeoff
