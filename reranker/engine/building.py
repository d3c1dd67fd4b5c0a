"""Building a served model's passage store in the background while the model serves.

A model configured with ``build_store`` (:class:`reranker.engine.ModelSpec`) whose store is missing,
damaged or made for another artifact starts serving at once: candidates sent by id are scored from
the text of its ``passages``. A thread encodes every passage with the model's own passage encoder
(:func:`reranker.store.build.build_store`: resumable, chunk by chunk), then the finished store is
opened, checked against the artifact and attached; from the next request on, stored candidates are
scored from it. The model's description says ``building`` (with the share done), ``ready`` or
``failed``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from reranker.artifact import Artifact
from reranker.engine.priority import lower_priority
from reranker.store import PassageStore
from reranker.store.build import build_store
from reranker.store.compress import default_codec

log = logging.getLogger(__name__)


class _Stopped(Exception):
    """The engine closed while the store was building (the build continues at the next start)."""


def _released(texts: Sequence[str], check: Callable[[], None]) -> Sequence[tuple[np.ndarray, bool]]:
    raise RuntimeError("this store build has ended")


class StoreBuild:
    """One background build: :meth:`start` it, :meth:`stop` it; ``on_progress(share)`` after each chunk
    of passages and ``on_ready(store)`` once the store is open (both from the build's thread);
    ``on_failed(message)`` when it fails."""

    def __init__(
        self,
        artifact: Artifact,
        passages: Mapping[str, str],
        directory: Path,
        encode: Callable[[Sequence[str], Callable[[], None]], Sequence[tuple[np.ndarray, bool]]],
        *,
        on_progress: Callable[[float], None],
        on_ready: Callable[[PassageStore], None],
        on_failed: Callable[[str], None],
        nice: int = 0,
    ) -> None:
        """``encode(texts, check)``: the states of ``texts`` (``check`` runs between batches); ``nice``:
        the build thread's nice increment (:func:`reranker.engine.priority.lower_priority`)."""
        self.artifact, self.passages, self.directory, self._encode = artifact, passages, directory, encode
        self.on_progress, self.on_ready, self.on_failed, self.nice = on_progress, on_ready, on_failed, nice
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reranker-build-{directory.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop at the next batch of passages and wait for the thread (what is committed stays)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _check(self) -> None:
        if self._stop.is_set():
            raise _Stopped

    def _progress(self, done: int, total: int) -> None:
        self._check()
        self.on_progress(done / total)

    def _run(self) -> None:
        lower_priority(self.nice)
        started = time.monotonic()
        try:
            build_store(
                self.artifact,
                self.passages,
                self.directory,
                encode=lambda texts: self._encode(texts, self._check),
                codec=default_codec(self.artifact.spec),
                progress=False,
                on_progress=self._progress,
            )
            store = PassageStore.open(self.directory, self.artifact)
            self._check()  # not attached to a closed engine
            self.on_ready(store)
            log.info("passage store %s of %d passages ready after %.0f s", self.directory, len(store), time.monotonic() - started)
        except _Stopped:
            log.info("stopped building %s (it continues from its last chunk at the next start)", self.directory)
        except Exception as exc:
            log.error("building the store %s failed: %s; candidates by id stay scored from their text", self.directory, exc)
            self.on_failed(f"{type(exc).__name__}: {exc}")
        finally:
            self._encode = _released  # the build's own sessions are freed once it ends
