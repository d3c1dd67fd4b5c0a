#!/usr/bin/env bash
# A serve-only install serves the default model: a fresh virtual environment gets only
# `pip install '.[serve]'` (no torch, no transformers: checked), then `reranker serve` assembles the
# default's ONNX artifact from the package's kit, serves at once while it builds a passage store of a
# small passage set, and answers Rerank over gRPC from text, then from the store. Run by tests/test_serve_only.py (slow); by hand:
#     scripts/serve_only_check.sh [PASSAGE_FOLDER]      (default: tests/fixtures/dl19-mini)
# Environment: PYTHON (default python3), WORK (a scratch folder, default a new temporary one),
# PIP_ARGS (extra pip arguments, e.g. --no-index --find-links DIR).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=$(cd "${1:-$ROOT/tests/fixtures/dl19-mini}" && pwd)
WORK=${WORK:-$(mktemp -d)}
PY=${PYTHON:-python3}
VENV="$WORK/venv"
log() { echo "serve_only_check: $*"; }

log "fresh venv in $VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q ${PIP_ARGS:-} "$ROOT[serve]"
for module in torch transformers; do
  if "$VENV/bin/python" -c "import $module" 2>/dev/null; then
    log "FAIL: $module is importable in the serve-only environment"; exit 1
  fi
done
log "torch and transformers are not importable; installed: $("$VENV/bin/pip" list --format=freeze | tr '\n' ' ')"

PORT=$("$VENV/bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
cd "$WORK"   # the installed package, not the source tree, is what runs
RERANKER_HOME="$WORK/home" "$VENV/bin/reranker" serve --data "$DATA" --host 127.0.0.1 --port "$PORT" \
  --metrics-port -1 --http-port 0 > "$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT

"$VENV/bin/python" - "$PORT" "$DATA" <<'PY'
import sys, time
from pathlib import Path

import grpc
from reranker.client import RerankerClient

port, data = sys.argv[1], Path(sys.argv[2])
assert "torch" not in sys.modules
queries = dict(line.rstrip("\n").split("\t", 1) for line in (data / "queries.tsv").open())
run: dict[str, list[tuple[str, float]]] = {}
for line in (data / "bm25.run").open():
    qid, _, pid, _, score, _ = line.split()
    run.setdefault(qid, []).append((pid, float(score)))
qid = sorted(run)[0]
with RerankerClient(f"127.0.0.1:{port}", timeout=30) as client:
    deadline = time.monotonic() + 900
    while True:
        try:
            if client.health() == "SERVING":
                break
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            sys.exit("serve_only_check: FAIL: the server did not turn SERVING in 900 s")
        time.sleep(2)
    ids = [p for p, _ in run[qid][:10]]
    model = client.list_models()[0]
    while model.store_status == "building":  # SERVING at once: ids are scored from their text meanwhile
        early = client.rerank(queries[qid], ids, top_k=5)
        assert len(early.results) == 5 and all(r.source in (r.SOURCE_TEXT, r.SOURCE_STORE) for r in early.results), early
        if time.monotonic() > deadline:
            sys.exit("serve_only_check: FAIL: the passage store was not ready in 900 s")
        time.sleep(1)
        model = client.list_models()[0]
    assert model.store_status == "ready", model
    answer = client.rerank(queries[qid], ids, top_k=5)
    assert len(answer.results) == 5 and all(r.source == r.SOURCE_STORE for r in answer.results), answer
    fused = client.rerank(queries[qid], [(p, "", s) for p, s in run[qid][:10]], fusion="minmax", fusion_weight=0.5)
    assert len(fused.results) == 10
print(f"serve_only_check: OK: model {model.name} ({model.arch} {model.precision}, store of {model.store_passages} "
      f"passages) answered Rerank for query {qid}: top {[r.id for r in answer.results]} "
      f"in {answer.timing.total_ms:.1f} ms")
PY
kill $SERVER
wait $SERVER 2>/dev/null || true
trap - EXIT
grep -E "assembling|building it in the background|store .* ready" "$WORK/serve.log" | sed 's/^/serve_only_check: server log: /' || true
