# Two commands do all the set-up on a fresh clone:  `make run` (main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DL19 := data/msmarco-passage/trec-dl-2019

.PHONY: setup run test lint proto clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Main job: serve the default student over gRPC (:50051, metrics :9090) with a passage store of the
# TREC DL 2019 passages (built at first start, then cached in $$RERANKER_HOME, default ~/.cache/reranker).
run: setup
	$(VENV)/bin/reranker serve --data $(DL19)

test: setup
	$(VENV)/bin/pytest -q

# What CI runs before the tests (and .pre-commit-config.yaml before a commit).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy reranker export
	$(PY) scripts/check_links.py

clean:
	rm -rf $(VENV) runs

# Regenerate the gRPC Python code in reranker/v1 from proto/ (a test keeps them in sync).
proto: setup
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. proto/reranker/v1/reranker.proto
