#!/usr/bin/env bash
# Reproduces the training results: triples -> teacher -> teacher scores -> students -> DL19 evaluation.
#
#   benchmarks/reproduce.sh            # the full budget (hours on a 2-core CPU; resumable: rerun to continue)
#   QUICK=1 benchmarks/reproduce.sh    # a short end-to-end run of the same pipeline (~25 min on 2 cores)
#
# Every step skips work whose output exists, and training resumes from its last checkpoint, so an
# interrupted run is continued by running the script again. Results land in $RUNS (default runs/).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
T=data/msmarco-passage
DL19=$T/trec-dl-2019
TRAIN=(--data $T/msmarco-dev-small-600 --data $T/trec-dl-2021 --data $T/trec-dl-2023-llmjudge)
LENGTHS=(--model-query-max-len 32 --model-passage-max-len 160)

if [[ "${QUICK:-0}" == 1 ]]; then
  RUNS=${RUNS:-runs/quick}
  TEACHER_STEPS=60; STUDENT_STEPS=60; LABELLED_PER_Q=40; PAIRS_DEPTH=10; PAIRS_PER_Q=10; EVERY=30
  STUDENTS=("colbert 3")
else
  RUNS=${RUNS:-runs/full}
  TEACHER_STEPS=${TEACHER_STEPS:-3000}; STUDENT_STEPS=${STUDENT_STEPS:-1500}
  LABELLED_PER_Q=400; PAIRS_DEPTH=30; PAIRS_PER_Q=120; EVERY=250
  STUDENTS=("colbert 6" "colbert 3" "prett 6" "bert_dot 6" "bert_dot 3" "tk 6")
fi
mkdir -p "$RUNS"
COMMON=(--batch-size 16 --warmup-steps 50 --checkpoint-every "$EVERY" --validate-every "$EVERY" --val-max-queries 30)

step() { echo "== $*" >&2; }

[[ -s $RUNS/labelled.tsv ]] || { step "labelled triples"; $BIN/reranker triples "${TRAIN[@]}" --run bm25,qrels \
  --labelled --max-per-query $LABELLED_PER_Q --out "$RUNS/labelled.tsv"; }
[[ -s $RUNS/pairs.tsv ]] || { step "all-pairs triples"; $BIN/reranker triples "${TRAIN[@]}" --run bm25,qrels \
  --all-pairs --depth $PAIRS_DEPTH --max-per-query $PAIRS_PER_Q --out "$RUNS/pairs.tsv"; }

if [[ ! -f $RUNS/teacher/.done ]]; then
  step "teacher: BERT-cat, RankNet on labels"
  $BIN/reranker train --arch bert_cat --init minilm "${TRAIN[@]}" --triples "$RUNS/labelled.tsv" --loss ranknet \
    --steps $TEACHER_STEPS --lr 3e-5 "${COMMON[@]}" "${LENGTHS[@]}" --out "$RUNS/teacher" --resume
  touch "$RUNS/teacher/.done"
fi
[[ -s $RUNS/teacher-scores.tsv ]] || { step "teacher scores"; $BIN/reranker score --model "$RUNS/teacher" \
  "${TRAIN[@]}" --triples "$RUNS/pairs.tsv" --out "$RUNS/teacher-scores.tsv"; }

evaluate() {  # model dir
  [[ -s $1/dl19-bm25.json ]] || $BIN/reranker evaluate --model "$1" --data $DL19 --run bm25 --json "$1/dl19-bm25.json"
}
evaluate "$RUNS/teacher"

for spec in "${STUDENTS[@]}"; do
  read -r arch layers <<<"$spec"
  for mode in nokd kd; do
    out=$RUNS/$arch-L$layers-$mode
    if [[ $mode == kd ]]; then triples=$RUNS/teacher-scores.tsv; loss=margin-mse; else triples=$RUNS/labelled.tsv; loss=ranknet; fi
    if [[ ! -f $out/.done ]]; then
      step "student $arch ($layers layers), $loss"
      $BIN/reranker train --arch "$arch" --init minilm --layers "$layers" "${TRAIN[@]}" --triples "$triples" \
        --loss $loss --steps $STUDENT_STEPS --lr 5e-5 --seed 7 "${COMMON[@]}" "${LENGTHS[@]}" \
        --no-model-colbert-query-augmentation --model-freeze-word-embeddings --out "$out" --resume
      touch "$out/.done"
    fi
    evaluate "$out"
  done
done
step "results"
for f in "$RUNS"/*/dl19-bm25.json; do
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{sys.argv[1]:50s} nDCG@10 {r['ndcg@10']:.4f}  MRR@10 {r['mrr@10']:.4f}  R@100 {r['recall@100']:.4f}\")" "$f"
done
