"""The real clients RAG and search stacks use, installed from the package index (the ``clients``
extra), pointed at a server on loopback: each re-ranks real TREC DL 2019 passages and must get the
order, indices and scores of the gRPC answer for the same request."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("fastapi")

from reranker.client import RerankerClient
from reranker.data import DataFolder

from .conftest import DL19_MINI
from .test_server import Live, folder, launch, setup  # noqa: F401 - the module fixtures of the tiny models and their store

TOP = 4
MODEL = "student"


@pytest.fixture(scope="module")
def server(setup) -> Iterator[Live]:  # noqa: F811
    live = launch(setup["cfg"])
    yield live
    live.stop()


@pytest.fixture(scope="module")
def case(server) -> tuple[str, list[str], list[tuple[int, float]]]:
    """A DL19 query, its first 10 BM25 passages' texts, and the gRPC answer: (index, score) best first."""
    data = DataFolder.open(DL19_MINI)
    qid = sorted(data.queries)[2]
    texts = [data.passages[p] for p, _ in data.run("bm25")[qid][:10]]
    with RerankerClient(server.target) as client:
        answer = client.rerank(data.queries[qid], [("", t) for t in texts], model=MODEL, top_k=TOP)
    return data.queries[qid], texts, [(r.index, r.score) for r in answer.results]


def base_url(server: Live) -> str:
    return f"http://127.0.0.1:{server.running.http_port}"


def same(got: list[tuple[int, float]], want: list[tuple[int, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in want]
    for (_, a), (_, b) in zip(got, want, strict=True):
        assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5), (a, b)


def test_cohere_sdk_v2_and_v1(server, case) -> None:
    cohere = pytest.importorskip("cohere")
    query, texts, want = case
    v2 = cohere.ClientV2(api_key="unused", base_url=base_url(server))
    same([(r.index, r.relevance_score) for r in v2.rerank(model=MODEL, query=query, documents=texts, top_n=TOP).results], want)
    v1 = cohere.Client(api_key="unused", base_url=base_url(server))
    answer = v1.rerank(model=MODEL, query=query, documents=texts, top_n=TOP, return_documents=True)
    same([(r.index, r.relevance_score) for r in answer.results], want)
    assert answer.results[0].document.text == texts[want[0][0]]


def test_langchain_cohere_rerank(server, case) -> None:
    langchain_cohere = pytest.importorskip("langchain_cohere")
    query, texts, want = case
    reranker = langchain_cohere.CohereRerank(cohere_api_key="unused", base_url=base_url(server), model=MODEL, top_n=TOP)
    same([(r["index"], r["relevance_score"]) for r in reranker.rerank(texts, query)], want)


def test_llama_index_cohere_rerank(server, case) -> None:
    rerank = pytest.importorskip("llama_index.postprocessor.cohere_rerank")
    schema = pytest.importorskip("llama_index.core.schema")
    query, texts, want = case
    post = rerank.CohereRerank(api_key="unused", model=MODEL, top_n=TOP, base_url=base_url(server))
    nodes = [schema.NodeWithScore(node=schema.TextNode(text=t, id_=str(i))) for i, t in enumerate(texts)]
    out = post.postprocess_nodes(nodes, query_str=query)
    same([(int(n.node.id_), n.score) for n in out], want)


def test_litellm_rerank(server, case, monkeypatch) -> None:
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of the price list
    litellm = pytest.importorskip("litellm")
    query, texts, want = case
    answer = litellm.rerank(
        model=f"cohere/{MODEL}", query=query, documents=texts, top_n=TOP, api_base=base_url(server), api_key="unused"
    )
    same([(r["index"], r["relevance_score"]) for r in answer.results], want)


def test_haystack_cohere_ranker(server, case) -> None:
    ranker_module = pytest.importorskip("haystack_integrations.components.rankers.cohere")
    haystack = pytest.importorskip("haystack")
    from haystack.utils import Secret

    query, texts, want = case
    ranker = ranker_module.CohereRanker(
        model=MODEL, api_key=Secret.from_token("unused"), api_base_url=base_url(server), top_k=TOP
    )
    docs = [haystack.Document(content=t, id=str(i)) for i, t in enumerate(texts)]
    out = ranker.run(query=query, documents=docs)["documents"]
    same([(int(d.id), d.score) for d in out], want)


def test_curl_as_the_readme_shows(server, case) -> None:
    import json
    import shutil
    import subprocess

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed on this machine")
    query, texts, want = case
    body = json.dumps({"model": MODEL, "query": query, "documents": texts, "top_n": TOP})
    out = subprocess.run(
        ["curl", "-s", "-X", "POST", f"{base_url(server)}/v2/rerank", "-H", "Content-Type: application/json", "-d", body],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )
    same([(r["index"], r["relevance_score"]) for r in json.loads(out.stdout)["results"]], want)
