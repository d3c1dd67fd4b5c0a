#!/usr/bin/env bash
# The peers that cannot share a venv with sentence-transformers 6.2 (.venv-bench, studies/peers/setup.sh), each in a venv
# of its own, found by studies/peers/__main__.py and run there by studies/peers/extra.py:
#   .venv-peers     infinity-emb 0.0.78 [torch,optimum]: pins sentence-transformers<4 and numpy<2
#   .venv-peers-st  sentence-transformers 5.7.0 [onnx]: its CrossEncoder's backend="onnx" needs optimum-onnx
#                   0.1.0, which needs transformers<4.58 (sentence-transformers 6.2 needs transformers>=5)
# Both share transformers 4.57.6, optimum 2.1.0 + optimum-onnx 0.1.0, onnxruntime 1.32.0 and torch 2.13.0
# (studies/peers/extra-constraints.txt). Each install is planned with pip --dry-run first and refused
# when the plan holds a CUDA build (nvidia-* packages); the installed torch is checked to be CPU-only.
#   PYTHON=python3.11 studies/peers/extra-setup.sh [infinity|st]     (default: both)
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
CONSTRAINTS=studies/peers/extra-constraints.txt

build() {
  local venv=$1; shift
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --dry-run -c "$CONSTRAINTS" --report "$venv/pip-plan.json" "$@"
  "$venv/bin/python" - "$venv/pip-plan.json" <<'PY'
import json, sys
plan = [(i["metadata"]["name"], i["metadata"]["version"]) for i in json.load(open(sys.argv[1]))["install"]]
cuda = [f"{n}=={v}" for n, v in plan if n.lower().startswith("nvidia") or n.lower() == "triton"]
if cuda:
    sys.exit(f"refused: the plan pulls a CUDA build ({', '.join(cuda)}); give pip a CPU torch 2.13.0 "
             "(e.g. PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu)")
print("plan:", " ".join(f"{n}=={v}" for n, v in sorted(plan)))
PY
  "$venv/bin/python" -m pip install -q -c "$CONSTRAINTS" "$@"
  "$venv/bin/python" -c "import torch; assert torch.version.cuda is None, torch.__version__; print('$venv: torch', torch.__version__)"
}

what=${1:-both}
if [ "$what" = both ] || [ "$what" = infinity ]; then
  build .venv-peers 'infinity-emb[torch,optimum]==0.0.78'
  .venv-peers/bin/python -c "import infinity_emb, sentence_transformers, optimum.onnxruntime; \
print('.venv-peers: infinity-emb', infinity_emb.__version__, 'sentence-transformers', sentence_transformers.__version__)"
fi
if [ "$what" = both ] || [ "$what" = st ]; then
  build .venv-peers-st 'sentence-transformers[onnx]==5.7.0'
  .venv-peers-st/bin/python -c "import sentence_transformers, optimum.onnxruntime; \
print('.venv-peers-st: sentence-transformers', sentence_transformers.__version__)"
fi
