"""Low-level file helpers shared by the data readers and writers (no project logic here)."""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from reranker.errors import DataFormatError, NotFoundError

PathLike = str | os.PathLike[str]


def iter_lines(path: PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` for the non-blank lines of a UTF-8 text file (``.gz`` allowed).

    Lines are split on ``\\n`` only (a ``\\r`` inside a passage text is kept); the line ending,
    including a Windows ``\\r\\n``, is removed. Line numbers start at 1 and count blank lines.
    """
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"{p}: no such file")
    lineno = 0
    try:
        with _open_text(p) as handle:
            for lineno, raw in enumerate(handle, start=1):
                line = raw[:-1] if raw.endswith("\n") else raw
                if line.endswith("\r"):
                    line = line[:-1]
                if line:
                    yield lineno, line
    except UnicodeDecodeError as exc:
        raise DataFormatError(p, lineno + 1, f"not valid UTF-8 ({exc.reason}); files must be UTF-8 text") from exc
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataFormatError(p, None, f"not a valid gzip file ({exc}); a '.gz' file must be gzip-compressed UTF-8 text") from exc


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="\n")
    return open(path, encoding="utf-8", newline="\n")


def atomic_write_text(path: PathLike, write: Callable[[IO[str]], None]) -> Path:
    """Write a UTF-8 text file atomically: ``write(handle)`` fills a temp file that replaces ``path``.

    The temporary file lives next to ``path`` (same file system) and is removed on failure, so a
    reader never sees a half-written file. Missing parent folders are created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return target


def has_whitespace(token: str) -> bool:
    """True if ``token`` contains any whitespace character (ids must be single tokens)."""
    return any(ch.isspace() for ch in token)
