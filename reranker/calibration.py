"""Calibrated relevance: a model's score mapped to P(relevant | query, passage) by Platt scaling
(Platt, 1999), ``1 / (1 + exp(-(a * x + b)))``, fitted offline on validation queries (``reranker
calibrate``) and shipped in the model's ``config.json``. ``x`` is the score, or the score per query
token where the score grows with the query (MaxSim sums one best cosine per query token). numpy only.

>>> c = Calibration(a=2.0, b=-1.0)
>>> [round(float(p), 4) for p in c.relevance(np.array([0.0, 0.5, 3.0]), query_tokens=4)]
[0.2689, 0.5, 0.9933]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from reranker.errors import ConfigError


@dataclass(frozen=True)
class Calibration:
    """Platt scaling of one model's scores."""

    a: float
    b: float
    per_query_token: bool = False
    """x = score / (word pieces of the query), for scores that grow with the query's length."""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.a) and math.isfinite(self.b) and self.a > 0):
            raise ConfigError(f"a calibration needs finite a > 0 (a higher score is more relevant) and b, got {self.a}, {self.b}")

    def relevance(self, scores: np.ndarray, query_tokens: int) -> np.ndarray:
        """P(relevant) in [0, 1] of each score (float64)."""
        x = np.asarray(scores, dtype=np.float64) / (max(1, query_tokens) if self.per_query_token else 1)
        return 1.0 / (1.0 + np.exp(-(self.a * x + self.b)))

    def to_dict(self) -> dict[str, Any]:
        return {"method": "platt", "a": self.a, "b": self.b, "per_query_token": self.per_query_token}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Calibration | None:
        """None for None; ConfigError for another method or bad numbers."""
        if data is None:
            return None
        if data.get("method", "platt") != "platt" or not set(data) <= {"method", "a", "b", "per_query_token"}:
            raise ConfigError(f"calibration must be {{method: 'platt', a, b, per_query_token}}, got {dict(data)!r}")
        try:
            return cls(float(data["a"]), float(data["b"]), bool(data.get("per_query_token", False)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"calibration needs numbers a and b, got {dict(data)!r}") from exc
