"""MaxSim over unpadded token states, in numpy: the ColBERT scorer graph's arithmetic for one query
and many passages, without padding and without repeating the query per pair.

ColBERT's score (Khattab and Zaharia, arXiv 2004.12832) is the sum over query positions of the best
dot product with any passage position. The exported ``scorer`` graph takes padded (batch, length,
dim) arrays with the query repeated in every row; for one query and ``n`` passages whose states lie
end to end in one (tokens, dim) array the same numbers are one matrix product and a segment max.
On CPU this is what the engine runs for an architecture whose row says ``maxsim``
(:mod:`reranker.arch`); tests compare it with the graph.
"""

from __future__ import annotations

import numpy as np

MASKED = -1.0e4
"""What a padded passage position scores in the graph (``reranker.models.bert.MASK_VALUE``): a passage
without any position scores this for every query position."""


def maxsim(q: np.ndarray, p: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(n,) float32 MaxSim scores of one query against ``n`` passages.

    ``q``: (query positions, dim) float state of the query (real positions only). ``p``: (tokens, dim)
    float32 or float16 states of the passages end to end, passage ``i`` holding ``lengths[i]`` rows
    (int, >= 0, summing to ``tokens``). Raises ``ValueError`` for shapes that do not fit.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if q.ndim != 2 or p.ndim != 2 or q.shape[1] != p.shape[1] or int(lengths.sum()) != p.shape[0] or (lengths < 0).any():
        raise ValueError(
            f"maxsim takes (positions, dim) query and (tokens, dim) passage states with one length per passage "
            f"summing to tokens; got {q.shape}, {p.shape} and lengths summing to {int(lengths.sum())}"
        )
    if not p.shape[0]:
        return np.full(len(lengths), MASKED * q.shape[0], dtype=np.float32)
    return best_sum(np.asarray(p, dtype=np.float32) @ np.asarray(q, dtype=np.float32).T, lengths)


def best_sum(sim: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(n,) float32: for each of ``n`` passages, the sum over query positions of its best row of
    ``sim`` ((tokens, query positions) dot products, passage ``i`` holding ``lengths[i]`` rows)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.full(len(lengths), MASKED * sim.shape[1], dtype=np.float32)
    present = lengths > 0
    if present.any():
        starts = np.cumsum(lengths) - lengths
        out[present] = np.maximum.reduceat(sim, starts[present], axis=0).sum(axis=1)
    return out


def end_to_end(states: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``states`` (each (length, dim)) as one (tokens, dim) array and the order of its rows.

    States that are consecutive slices of one array (what a passage store's one-pass decode returns,
    in any order) are given as a view of it, without copying; others are concatenated. Returns the
    array and ``order``: the array holds ``states[order[0]]``, then ``states[order[1]]``, ...
    """
    n = len(states)
    order = np.arange(n)
    base = states[0].base if n else None
    if base is not None and all(s.base is base and s.flags.c_contiguous for s in states) and base.flags.c_contiguous:
        width = states[0].shape[1]
        row = width * states[0].itemsize
        start = base.__array_interface__["data"][0]
        offsets = np.array([s.__array_interface__["data"][0] - start for s in states], dtype=np.int64)
        rows = np.array([s.shape[0] for s in states], dtype=np.int64)
        order = np.argsort(offsets, kind="stable")
        first = offsets[order[0]]
        ends = offsets[order] + rows[order] * row
        whole = base.reshape(-1, width) if base.size % width == 0 else None
        if whole is not None and first % row == 0 and np.array_equal(offsets[order[1:]], ends[:-1]):
            return whole[first // row : first // row + int(rows.sum())], order
        order = np.arange(n)
    return np.concatenate(states) if n else np.empty((0, 0), dtype=np.float32), order
