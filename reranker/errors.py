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


class StoreDamagedError(ArtifactError):
    """A passage store's data is damaged (a centroid id out of range, ...): found while serving."""


class CapacityError(RerankerError):
    """The server is over its queue capacity and sheds the request."""


class DeadlineError(RerankerError):
    """The caller's deadline passed (or it cancelled) before the work was done."""


QUOTE_CHARS = 100
"""Most characters of one client-supplied string an error message quotes."""


def quoted(text: str, limit: int = QUOTE_CHARS) -> str:
    """A client-supplied string for an error message: its repr, cut to ``limit`` characters with its
    length when longer, so that a message never grows with the client's input.

    >>> quoted("flea")
    "'flea'"
    >>> quoted("x" * 3000, 5)
    "'xxxxx'... (3,000 chars)"
    """
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} chars)"


def some(items: list[str], shown: int = 3, limit: int = QUOTE_CHARS) -> str:
    """A bounded list of client-supplied strings: at most ``shown``, each :func:`quoted`, and the count of the rest.

    >>> some(["a", "b", "c", "d", "e"], shown=2)
    "e.g. 'a', 'b' and 3 more"
    >>> some(["a"])
    "'a'"
    """
    head = ", ".join(quoted(x, limit) for x in items[:shown])
    if len(items) <= shown:
        return head
    return f"e.g. {head} and {len(items) - shown:,} more"


def bounded(message: str, limit: int = 2000) -> str:
    """``message`` cut to ``limit`` characters (a transport's last guard: status details travel in
    a header that peers cap at 16 KiB).

    >>> bounded("abcdef", 4)
    'a...'
    """
    return message if len(message) <= limit else message[: limit - 3] + "..."
