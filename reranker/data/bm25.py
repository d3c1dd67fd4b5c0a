"""BM25 first-stage candidates for unlabelled queries, through the ``bm25s`` library (Lù, 2024).

Used to turn a set of queries without candidates (the 20k MS MARCO train queries) into a data folder
that ``reranker triples --all-pairs`` and ``reranker score`` can use: ``queries.tsv``, the retrieved
passages' ``passages.tsv.gz``, ``bm25.run`` and a ``manifest.json`` saying how it was made.
Parameters default to Anserini's MS MARCO passage settings (k1 = 0.82, b = 0.68) with Porter-style
(Snowball English) stemming and English stop words.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from reranker.data.formats import Run, write_run
from reranker.errors import ConfigError


@dataclass(frozen=True)
class BM25Config:
    """How candidates are retrieved."""

    k1: float = 0.82
    """Term-frequency saturation (Anserini's MS MARCO passage value)."""
    b: float = 0.68
    """Length normalisation (Anserini's MS MARCO passage value)."""
    depth: int = 20
    """Candidates kept per query."""
    stemmer: str = "english"
    """Snowball stemmer language (PyStemmer), or ``none``."""

    def __post_init__(self) -> None:
        if self.k1 <= 0 or not 0 <= self.b <= 1:
            raise ConfigError(f"BM25 needs k1 > 0 and 0 <= b <= 1, got k1={self.k1}, b={self.b}")
        if self.depth < 1:
            raise ConfigError(f"depth must be >= 1, got {self.depth}")


def normalise_query(text: str) -> str:
    """Lower-cased words only, to find the same query under two ids.

    >>> normalise_query("What is  the Lifespan of a flea?")
    'what is the lifespan of a flea'
    """
    return " ".join(re.findall(r"\w+", text.lower()))


def bm25_run(queries: Mapping[str, str], passages: Mapping[str, str], cfg: BM25Config, *, progress: bool = True) -> Run:
    """Top-``cfg.depth`` passages per query by BM25 over ``passages``: {qid: [(pid, score), ...]}, best first.

    Raises ConfigError when there are no passages to search.
    """
    import bm25s

    if not passages:
        raise ConfigError("BM25 needs at least one passage to search")
    stemmer = None
    if cfg.stemmer != "none":
        import Stemmer

        stemmer = Stemmer.Stemmer(cfg.stemmer)
    pids = list(passages)
    retriever = bm25s.BM25(k1=cfg.k1, b=cfg.b)
    retriever.index(
        bm25s.tokenize([passages[p] for p in pids], stopwords="en", stemmer=stemmer, show_progress=progress),
        show_progress=progress,
    )
    qids = list(queries)
    tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer, show_progress=progress)
    depth = min(cfg.depth, len(pids))
    docs, scores = retriever.retrieve(tokens, k=depth, show_progress=progress)
    run: Run = {}
    for row, qid in enumerate(qids):
        ranked = [(pids[int(d)], float(s)) for d, s in zip(docs[row], scores[row], strict=True) if s > 0]
        if ranked:
            run[qid] = ranked
    return run


def write_candidate_folder(
    out: Path, queries: Mapping[str, str], passages: Mapping[str, str], run: Run, info: Mapping[str, object]
) -> dict[str, object]:
    """Write a data folder of ``run``'s queries, the passages it names and ``bm25.run``; returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    named = sorted({pid for cands in run.values() for pid, _ in cands})
    with (out / "queries.tsv").open("w", encoding="utf-8") as f:
        f.writelines(f"{qid}\t{queries[qid]}\n" for qid in sorted(run))
    with gzip.open(out / "passages.tsv.gz", "wt", encoding="utf-8") as f:
        f.writelines(f"{pid}\t{passages[pid]}\n" for pid in named)
    write_run(out / "bm25.run", run, tag="bm25s")
    manifest = {"kind": "reranker.candidates", "queries": len(run), "passages": len(named), **info}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def config_record(cfg: BM25Config) -> dict[str, object]:
    """The settings as the manifest records them, with the library's version."""
    from importlib.metadata import version

    return {"retriever": f"bm25s {version('bm25s')}", **asdict(cfg)}
