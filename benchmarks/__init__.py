"""The product's benchmarks, run from the repository root as ``reranker bench NAME ...`` or
``.venv/bin/python -m benchmarks.NAME ...``; research studies live in ``studies/``."""

BENCHMARKS: dict[str, str] = {
    "latency": "closed-loop latency and throughput over gRPC, HTTP and in process, every architecture",
    "soak": "mixed traffic above capacity on loopback: admitted p50/p99, sheds, lost requests, memory",
    "fuzz": "thousands of generated hostile requests (gRPC, or HTTP with --transport http): OK or a precise code",
    "grpc_floor": "the round trip of a 100-candidate Rerank with no model behind it",
    "runtime": "in-process latency per query: PyTorch against ONNX Runtime, from text and from the store",
    "build_throughput": "passage-store build: passages per second per core, one process against Ray",
    "cache": "p50 of a repeated 100-candidate request with and without the score cache; bytes per cached pair",
    "colbert_path": "ColBERT's request path: nDCG@10 and per-stage time from the store's codes against the padded graph",
    "first_start": "reranker serve with nothing cached: seconds to SERVING, to the first answer and to the store",
}
"""``reranker bench`` names -> what each measures (each module writes one JSON record with ``--json``)."""
