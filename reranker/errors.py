"""One exception hierarchy for the whole project.

Every error a user can cause derives from :class:`RerankerError`. The serving layer maps these
classes to gRPC status codes in one place; the CLI prints their message and exits non-zero.
Messages say what was wrong and what is allowed.
"""

from __future__ import annotations


class RerankerError(Exception):
    """Base class of every error the project raises on purpose."""


class ConfigError(RerankerError, ValueError):
    """A configuration value is out of its allowed range or inconsistent with another."""


class DataFormatError(RerankerError, ValueError):
    """An input file (queries, passages, qrels, run, triples, scores) is malformed."""

    def __init__(self, path: object, line: int | None, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem


class InvalidInputError(RerankerError, ValueError):
    """A request or argument is invalid (empty query, too many candidates, ...)."""


class NotFoundError(RerankerError, KeyError):
    """Something named by the caller does not exist (a model, a passage id, a run, a query)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ArtifactError(RerankerError):
    """A checkpoint, ONNX artifact or passage store is missing, corrupt or mismatched."""


class CapacityError(RerankerError):
    """The server is over its queue capacity and sheds the request."""


class DeadlineError(RerankerError):
    """The caller's deadline passed (or it cancelled) before the work was done."""
