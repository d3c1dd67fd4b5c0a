#!/usr/bin/env bash
# The trade-off table and plot of 2026-12-08 (README "Results"): one run of benchmarks/latency.py, now with
# a 128-d ColBERT (`--colbert-dims 128`), joined with the DL19 / DL21 evaluations of the trained models at
# hand: the campaign's BERT-cat teacher (6,000 Margin-MSE steps) and the shipped default (inputs of
# 2026-12-07), the zero-shot start, and the campaign's 128-d ColBERT Margin-MSE student (1,000 steps):
#   .venv/bin/python -m benchmarks.latency --cell-seconds 6 --requests 40 --text-max-concurrency 4 \
#       --colbert-dims 128 --json studies/tradeoff/results/2026-12-08-latency-cpu.json
#   the student's evaluations are the campaign's (benchmarks/reproduce.sh, phase students), kept in
#   studies/tradeoff/results/2026-12-08-inputs/
set -euo pipefail
cd "$(dirname "$0")/../.."
I=studies/tradeoff/results/2026-12-07-inputs; J=studies/tradeoff/results/2026-12-08-inputs
T="teacher (BERT-cat, campaign)"; D="ColBERT-L6 default"; Z="ColBERT-L6 zero-shot"; S="ColBERT-L6 128-d (campaign)"
STORE=$(ls -d runs/bench-latency/minilm-*/store-colbert-residual1-* | head -1)
STORE128=$(ls -d runs/bench-latency/minilm-*/store-colbert-d128-residual1-* | head -1)
.venv/bin/python -m studies.tradeoff --latency studies/tradeoff/results/2026-12-08-latency-cpu.json \
  --alias "$T=teacher" --alias "$D=colbert" --alias "$Z=colbert" --alias "$S=colbert-d128" \
  --eval "$T=$I/teacher-dl19.json" --heldout "$T=$I/teacher-dl21.json" \
  --eval "$D=$I/default-dl19.json" --heldout "$D=$I/default-dl21.json" --store "$D=$STORE" \
  --eval "$Z=campaign/members/zs-colbert/trec-dl-2019-bm25.json" --heldout "$Z=campaign/members/zs-colbert/trec-dl-2021-bm25.json" \
  --eval "$S=$J/d128-dl19.json" --heldout "$S=$J/d128-dl21.json" --store "$S=$STORE128" \
  --bm25 campaign/first-stage/trec-dl-2019-bm25.json --reference "ensemble teacher (3 members)=campaign/ensemble/trec-dl-2019-bm25.json" \
  --teacher "$T" --out studies/tradeoff/results/2026-12-08-tradeoff
