"""A bounded in-memory cache of model scores, so that a repeated request skips the pre stage and the
batcher (re-rank traffic repeats: the same query and candidates, byte for byte).

A key is (model name, artifact identity, query digest, passage key): the passage key is the id when
the model's passage store holds it (its stored state is what is scored, whatever text comes with it)
and a digest of the text otherwise; digests are BLAKE2b-128, so a key never holds a text. Values are
the model's own score and the candidate's truncation and source flags; fusion and top_k are applied
after the cache, per request. Least recently used entries go first when the bytes exceed the bound.
A model is served from one artifact and store for the life of the engine (changing them means a
restart, which empties the cache), and another artifact's identity never matches an entry anyway.
A long text is kept with its windows' aggregate (its key names the aggregate); a candidate whose
windows a request's window budget cut is not kept, while one kept whole is served whole to a later
request whose budget would have cut it. Used on the engine's event loop only (not thread-safe).
"""

from __future__ import annotations

import hashlib
import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Key = tuple[str, str, bytes, str]

ENTRY_OVERHEAD = 100
"""Bytes of an OrderedDict entry besides its key and value (hash slot and linked-list node)."""


@dataclass(frozen=True, slots=True)
class Cached:
    """What is kept of one scored candidate."""

    score: float
    truncated: bool
    from_store: bool
    windows: int = 1


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class ScoreCache:
    """LRU of :class:`Cached` by (model, artifact, query, passage), at most ``max_bytes`` (0 = off)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Key, tuple[Cached, int]] = OrderedDict()
        self.nbytes = 0
        """Bytes held (keys, values and :data:`ENTRY_OVERHEAD` per entry)."""

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def keys(
        model: str,
        identity: str,
        query: str,
        ids: Sequence[str],
        texts: Sequence[str],
        stored: Callable[[str], bool],
        aggregate: str = "",
    ) -> list[Key]:
        """One key per candidate (``stored(pid)``: the model's store holds that id); a text's key
        names the ``aggregate`` of its windows."""
        q = _digest(query)
        t = "t" + aggregate + ":"
        return [
            (model, identity, q, "i" + pid if stored(pid) else t + _digest(text).hex())
            for pid, text in zip(ids, texts, strict=True)
        ]

    def get_all(self, keys: Sequence[Key]) -> list[Cached] | None:
        """Every key's value (each then most recently used), or None unless all of them are held."""
        if not self.enabled or not keys or any(k not in self._entries for k in keys):
            return None
        for k in keys:
            self._entries.move_to_end(k)
        return [self._entries[k][0] for k in keys]

    def put_all(self, keys: Sequence[Key], values: Sequence[Cached]) -> None:
        """Keep ``values`` under ``keys``, dropping the least recently used beyond ``max_bytes``."""
        if not self.enabled:
            return
        for key, value in zip(keys, values, strict=True):
            old = self._entries.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            size = sys.getsizeof(key) + sum(sys.getsizeof(part) for part in key) + sys.getsizeof(value) + ENTRY_OVERHEAD
            if size > self.max_bytes:
                continue
            self._entries[key] = (value, size)
            self.nbytes += size
        while self.nbytes > self.max_bytes:
            _, (_, size) = self._entries.popitem(last=False)
            self.nbytes -= size

    def drop_model(self, model: str) -> None:
        """Forget every entry of ``model``."""
        for key in [k for k in self._entries if k[0] == model]:
            self.nbytes -= self._entries.pop(key)[1]
