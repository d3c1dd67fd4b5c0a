# Two commands do all the set-up on a fresh clone:  `make run` (main job) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DL19 := data/msmarco-passage/trec-dl-2019

.PHONY: setup run test lint proto clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# Main job: evaluate BM25 and the zero-shot MiniLM ColBERT start on TREC DL 2019.
run: setup
	$(VENV)/bin/reranker evaluate --model bm25 --data $(DL19) --run bm25
	$(VENV)/bin/reranker init --arch colbert --init minilm --no-model-colbert-query-augmentation --out runs/zero-shot-colbert
	$(VENV)/bin/reranker evaluate --model runs/zero-shot-colbert --data $(DL19) --run bm25 --json runs/zero-shot-colbert/dl19.json

test: setup
	$(VENV)/bin/pytest -q

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) runs

# Regenerate the gRPC Python code in reranker/v1 from proto/ (a test keeps them in sync).
proto: setup
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. proto/reranker/v1/reranker.proto
