#!/usr/bin/env bash
# Installs the `bench` extra (the peers of studies/peers/__main__.py) into .venv with torch kept at 2.13.0
# (studies/peers/constraints.txt). optimum-intel requires torchvision, and the only torchvision for
# torch 2.13 on PyPI is a CUDA build whose operators cannot load beside the CPU torch (transformers then
# fails to import); nothing here uses torchvision, so it is removed again.
#   Not installable beside sentence-transformers 6.2 (checked with pip --dry-run, see studies/peers/__main__.py):
#   its ONNX backend (optimum-onnx 0.1.0 needs transformers<4.58) and infinity-emb 0.0.78.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
"$PY" -m pip install -c studies/peers/constraints.txt -e '.[bench]'
"$PY" -m pip uninstall -y torchvision || true
"$PY" -c "import torch, transformers, sentence_transformers, openvino, nncf; \
print('bench extra ready: torch', torch.__version__, 'sentence-transformers', sentence_transformers.__version__, \
'openvino', openvino.__version__)"
