"""Data files (queries, passages, qrels, runs), data folders and training triples."""

from __future__ import annotations

from reranker.data.folders import Collection, DataFolder, parse_run_spec
from reranker.data.formats import (
    QRELS_RUN,
    Qrels,
    Run,
    read_passages,
    read_qrels,
    read_queries,
    read_run,
    validate_run,
    write_run,
)
from reranker.data.triples import (
    ScoredTriple,
    Triple,
    all_pairs_triples,
    labelled_triples,
    read_scores,
    read_training_file,
    read_triples,
    split_validation,
    validation_queries,
    write_scores,
    write_triples,
)

__all__ = [
    "QRELS_RUN",
    "Collection",
    "DataFolder",
    "Qrels",
    "Run",
    "ScoredTriple",
    "Triple",
    "all_pairs_triples",
    "labelled_triples",
    "parse_run_spec",
    "read_passages",
    "read_qrels",
    "read_queries",
    "read_run",
    "read_scores",
    "read_training_file",
    "read_triples",
    "split_validation",
    "validate_run",
    "validation_queries",
    "write_run",
    "write_scores",
    "write_triples",
]
