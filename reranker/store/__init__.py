"""The passage store: precomputed passage states addressed by passage id.

:mod:`reranker.store.reader` opens a built store (numpy only: what serving needs);
:mod:`reranker.store.build` writes one offline from an encoder it is given.
"""

from reranker.store.reader import STORE_DTYPES, STORE_KIND, PassageStore

__all__ = ["STORE_DTYPES", "STORE_KIND", "PassageStore"]
