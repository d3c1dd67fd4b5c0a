"""Fusion of the re-ranker's score with the first stage's: the one implementation that serving
(:mod:`reranker.engine`), ``reranker evaluate`` and ``reranker pick-fusion`` share.

Rules, over the candidates of one query (one request):

* ``none``: the model's score alone.
* ``minmax``: interpolation of min-max normalised scores, ``w * mm(model) + (1 - w) * mm(first)``,
  where ``mm(x) = (x - min) / (max - min)`` (0 for every candidate when all scores are equal).
* ``zscore``: the same interpolation of per-query z-scores (mean 0, population std 1).
* ``rrf``: weighted reciprocal rank fusion, ``w / (k + rank_model) + (1 - w) / (k + rank_first)``
  with 1-based ranks (ties keep the candidates' order) and ``k = rrf_k`` (60 by default, as in
  Cormack et al., SIGIR 2009; with ``w = 0.5`` the order is that of their unweighted RRF).

``w`` (``weight``) is the re-ranker's share: 1 ranks by the model alone, 0 by the first stage alone.
Normalisation is per query because the scales differ (BM25 around 10-20, TAS-B dot products
around 100, SPLADE in the 10^5, ColBERT sums of cosines up to the query length). No torch, no numpy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reranker.errors import ConfigError, InvalidInputError, quoted

RULES = ("none", "minmax", "zscore", "rrf")
"""Fusion rules, see the module docstring."""


@dataclass(frozen=True)
class FusionRule:
    """How a model's scores are combined with the first stage's (per model in the server config,
    per request in ``RerankRequest.fusion``, ``--fusion`` in ``reranker evaluate``)."""

    rule: str = "none"
    """One of :data:`RULES`."""
    weight: float = 1.0
    """The re-ranker's share in [0, 1]; the first stage gets ``1 - weight``."""
    rrf_k: float = 60.0
    """RRF's rank offset (> 0; used by ``rrf`` only)."""

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ConfigError(f"fusion rule must be one of {RULES}, got {quoted(self.rule)}")
        if not (math.isfinite(self.weight) and 0.0 <= self.weight <= 1.0):
            raise ConfigError(f"fusion weight must be in [0, 1] (the re-ranker's share), got {self.weight}")
        if not (math.isfinite(self.rrf_k) and self.rrf_k > 0):
            raise ConfigError(f"rrf_k must be a finite number > 0, got {self.rrf_k}")

    @property
    def active(self) -> bool:
        """Whether first-stage scores are needed (any rule but ``none``)."""
        return self.rule != "none"

    def override(self, rule: str | None, weight: float | None) -> FusionRule:
        """This rule with a request's rule and weight where the request gives them (ConfigError when
        they are out of range), its ``rrf_k`` kept.

        >>> FusionRule("minmax", 0.6).override(None, 0.3).describe()
        'minmax w=0.3'
        """
        return FusionRule(rule or self.rule, self.weight if weight is None else weight, self.rrf_k)

    def describe(self) -> str:
        """``'none'``, ``'minmax w=0.6'``, ``'rrf w=0.5 k=60'``."""
        if not self.active:
            return "none"
        return f"{self.rule} w={self.weight:g}" + (f" k={self.rrf_k:g}" if self.rule == "rrf" else "")

    def fuse(self, model: Sequence[float], first: Sequence[float]) -> list[float]:
        """Fused scores of one query's candidates, in the candidates' order.

        ``model`` and ``first`` hold one finite score per candidate (higher is better). Raises
        InvalidInputError when the lengths differ or a first-stage score is not finite.

        >>> FusionRule("minmax", 0.5).fuse([1.0, 3.0, 2.0], [30.0, 10.0, 20.0])
        [0.5, 0.5, 0.5]
        >>> FusionRule("minmax", 0.75).fuse([1.0, 3.0], [20.0, 10.0])
        [0.25, 0.75]
        >>> [round(s, 5) for s in FusionRule("rrf", 0.5, rrf_k=1).fuse([1.0, 3.0], [20.0, 10.0])]
        [0.41667, 0.41667]
        >>> FusionRule().fuse([2.0, 1.0], [0.0, 5.0])
        [2.0, 1.0]
        """
        if len(model) != len(first):
            raise InvalidInputError(
                f"{len(model)} model scores but {len(first)} first-stage scores; give one first-stage score per candidate"
            )
        if not self.active:
            return [float(s) for s in model]
        if not all(math.isfinite(s) for s in first):
            raise InvalidInputError("first-stage scores must be finite numbers (no NaN or infinity)")
        if self.rule == "rrf":
            m, f = _rrf(model, self.rrf_k), _rrf(first, self.rrf_k)
        elif self.rule == "minmax":
            m, f = _minmax(model), _minmax(first)
        else:
            m, f = _zscore(model), _zscore(first)
        w = self.weight
        return [w * a + (1.0 - w) * b for a, b in zip(m, f, strict=True)]


def _minmax(values: Sequence[float]) -> list[float]:
    lo, hi = min(values, default=0.0), max(values, default=0.0)
    return [(v - lo) / (hi - lo) if hi > lo else 0.0 for v in values]


def _zscore(values: Sequence[float]) -> list[float]:
    if not values:
        return []
    mean = math.fsum(values) / len(values)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / std if std > 0 else 0.0 for v in values]


def _rrf(values: Sequence[float], k: float) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: -values[i])  # stable: ties keep the given order
    out = [0.0] * len(values)
    for rank, i in enumerate(order, start=1):
        out[i] = 1.0 / (k + rank)
    return out


def fuse_run(
    first: Mapping[str, Sequence[tuple[str, float]]], model: Mapping[tuple[str, str], float], rule: FusionRule
) -> dict[str, list[tuple[str, float]]]:
    """A re-ranked run: per query, its first-stage candidates ``(pid, score)`` fused by ``rule`` with
    the model's score of each ``(qid, pid)``, sorted by fused score (ties keep the first stage's order,
    as the server keeps the request's). Raises KeyError for a candidate the model did not score.

    >>> fuse_run({"q": [("a", 9.0), ("b", 1.0)]}, {("q", "a"): 0.0, ("q", "b"): 1.0}, FusionRule("minmax", 0.4))
    {'q': [('a', 0.6), ('b', 0.4)]}
    """
    out: dict[str, list[tuple[str, float]]] = {}
    for qid, cands in first.items():
        fused = rule.fuse([model[(qid, pid)] for pid, _ in cands], [s for _, s in cands])
        order = sorted(range(len(cands)), key=lambda i: -fused[i])
        out[qid] = [(cands[i][0], fused[i]) for i in order]
    return out


FIRST_STAGES = ("bm25", "dense", "sparse")
"""Kinds of first stage a model may ship a fusion choice for: lexical (BM25), dense (bi-encoder)
and learned sparse (SPLADE-like) retrieval."""


def first_stage_rules(choices: Mapping[str, Mapping[str, object]] | None) -> dict[str, FusionRule]:
    """The fusion rule per first-stage kind from a model's ``first_stage_fusion`` (its config.json),
    ``{"dense": {"rule": "minmax", "weight": 0.8}, ...}``; ConfigError for unknown kinds or bad rules."""
    rules: dict[str, FusionRule] = {}
    for kind, entry in (choices or {}).items():
        if kind not in FIRST_STAGES:
            raise ConfigError(f"first-stage kind must be one of {', '.join(FIRST_STAGES)}, got {quoted(kind)}")
        known = {"rule", "weight", "rrf_k"}
        if not isinstance(entry, Mapping) or not set(entry) <= known:
            raise ConfigError(f"the fusion choice for {kind} must be a table with {sorted(known)}, got {entry!r}")
        try:
            weight, rrf_k = float(entry.get("weight", 1.0)), float(entry.get("rrf_k", 60.0))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(f"the fusion choice for {kind} needs numbers for weight and rrf_k, got {dict(entry)!r}") from None
        rules[kind] = FusionRule(str(entry.get("rule", "none")), weight, rrf_k)
    return rules


def rule_for_first_stage(rules: Mapping[str, FusionRule], kind: str, model: str) -> FusionRule:
    """The shipped rule of ``model`` for first-stage ``kind``; ConfigError says which kinds it has."""
    if kind not in FIRST_STAGES:
        raise ConfigError(f"first_stage must be one of {', '.join(FIRST_STAGES)}, got {quoted(kind)}")
    if kind not in rules:
        has = ", ".join(sorted(rules)) or "none"
        raise ConfigError(f"model {model} ships no fusion choice for a {kind} first stage (it has: {has})")
    return rules[kind]


def parse_rule(text: str, *, rrf_k: float = 60.0) -> FusionRule:
    """``'minmax:0.6'`` -> ``FusionRule('minmax', 0.6)``; ``'none'``; a bare rule takes weight 0.5.

    >>> parse_rule("rrf:0.3")
    FusionRule(rule='rrf', weight=0.3, rrf_k=60.0)
    """
    rule, _, weight = text.partition(":")
    if rule == "none":
        return FusionRule()
    try:
        w = float(weight) if weight else 0.5
    except ValueError:
        raise ConfigError(f"fusion {quoted(text)}: the weight after ':' must be a number in [0, 1]") from None
    return FusionRule(rule, w, rrf_k)


__all__ = ["FIRST_STAGES", "RULES", "FusionRule", "first_stage_rules", "fuse_run", "parse_rule", "rule_for_first_stage"]
