#!/usr/bin/env bash
# Installs the peers of studies/peers/__main__.py (the `bench` extra: sentence-transformers 6.2, optimum-intel,
# nncf) with the project's serve, train and openvino extras into a venv of their own, .venv-bench, with torch
# kept at 2.13.0 (studies/peers/constraints.txt). Not into .venv: optimum-intel moves transformers to 5.5.4,
# which the import parity tests of .venv do not accept. optimum-intel requires torchvision, and the only
# torchvision for torch 2.13 on PyPI is a CUDA build whose operators cannot load beside the CPU torch
# (transformers then fails to import); nothing here uses torchvision, so it is removed again.
#   Not installable beside sentence-transformers 6.2 (checked with pip --dry-run, see studies/peers/__main__.py):
#   its ONNX backend (optimum-onnx 0.1.0 needs transformers<4.58) and infinity-emb 0.0.78: extra-setup.sh.
#   PYTHON=python3.11 studies/peers/setup.sh      then   .venv-bench/bin/python -m studies.peers ...
#   (optimum-intel's torchvision is a CUDA build and is removed after the install; the plan check ignores it)
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv-bench}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY=$VENV/bin/python
# planned first and refused when the plan holds a CUDA build (as extra-setup.sh does): give pip a CPU torch 2.13.0
# where the default index would pick the CUDA wheel (e.g. PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu)
"$PY" -m pip install -q --dry-run -c studies/peers/constraints.txt --report "$VENV/pip-plan.json" -e '.[serve,train,openvino,bench]'
"$PY" - "$VENV/pip-plan.json" <<'PLAN'
import json, sys
plan = [(i["metadata"]["name"], i["metadata"]["version"]) for i in json.load(open(sys.argv[1]))["install"]]
cuda = [f"{n}=={v}" for n, v in plan if n.lower().startswith("nvidia") or n.lower() == "triton"]
if cuda:
    sys.exit(f"refused: the plan pulls a CUDA build ({', '.join(cuda)}); give pip a CPU torch 2.13.0")
PLAN
"$PY" -m pip install -c studies/peers/constraints.txt -e '.[serve,train,openvino,bench]'
"$PY" -m pip uninstall -y torchvision || true
"$PY" -c "import torch, transformers, sentence_transformers, openvino, nncf; \
assert torch.version.cuda is None, torch.__version__; \
print('$VENV ready: torch', torch.__version__, 'sentence-transformers', sentence_transformers.__version__, \
'openvino', openvino.__version__)"
