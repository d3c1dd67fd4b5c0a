#!/usr/bin/env bash
# Fusion of the served default with its first stage: weights picked on the validation split, then
# DL19 (BM25 / TAS-B / SPLADE top-100) and DL21 (BM25 top-100) with and without fusion.
#   1. the served default's scores (torch-free artifact from the kit, fp16 store, engine request path):
#        .venv/bin/python -m studies.fusion.served_scores --out runs/fusion/served --list val=... (see README)
#   2. this script: pick-fusion per rule and overall, evaluate each list; writes runs/fusion/served/table.md
set -euo pipefail
R=${RERANKER:-.venv/bin/reranker}
S=${S:-runs/fusion/served}
T=data/msmarco-passage
VAL="--data $T/msmarco-dev-small-600 --run bm25 --scores-from $S/val.run"
$R pick-fusion --model default $VAL --out "$S/pick.json"
for rule in minmax zscore rrf; do
  $R pick-fusion --model default $VAL --rules $rule --out "$S/pick-$rule.json" > /dev/null
done
for list in dl19-bm25:trec-dl-2019:bm25 dl19-tasb:trec-dl-2019:tasb dl19-splade:trec-dl-2019:splade dl21-bm25:trec-dl-2021:bm25; do
  IFS=: read -r name folder run <<< "$list"
  for pick in pick pick-minmax pick-zscore pick-rrf; do
    $R evaluate --model default --data "$T/$folder" --run "$run" --scores-from "$S/$name.run" \
      --fusion-from "$S/$pick.json" --json "$S/$name-$pick.json" > /dev/null
  done
done
.venv/bin/python - "$S" <<'PY'
import json, sys
from pathlib import Path
s = Path(sys.argv[1])
lists = ["dl19-bm25", "dl19-tasb", "dl19-splade", "dl21-bm25"]
picks = {p: json.loads((s / f"{p}.json").read_text()) for p in ("pick", "pick-minmax", "pick-zscore", "pick-rrf")}
head = "| | validation | " + " | ".join(lists) + " |"
rows = [head, "|" + "---|" * (len(lists) + 2)]
first = {n: json.loads((s / f"{n}-pick.json").read_text()) for n in lists}
rows.append("| first stage alone | {:.4f} | ".format(picks["pick"]["first_stage"])
            + " | ".join(f"{first[n]['first_stage']['ndcg@10']:.4f}" for n in lists) + " |")
rows.append("| default alone (no fusion) | {:.4f} | ".format(picks["pick"]["model_alone"])
            + " | ".join(f"{first[n]['without_fusion']['ndcg@10']:.4f}" for n in lists) + " |")
for p, label in (("pick-minmax", "minmax"), ("pick-zscore", "zscore"), ("pick-rrf", "rrf"), ("pick", "**picked**")):
    w = picks[p]["picked"]
    res = [json.loads((s / f"{n}-{p}.json").read_text()) for n in lists]
    rows.append(f"| {label}: {w['rule']} w={w['weight']:g} | {w['ndcg@10']:.4f} | "
                + " | ".join(f"{r['ndcg@10']:.4f}" for r in res) + " |")
(s / "table.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
PY
