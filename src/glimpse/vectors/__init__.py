"""Vector stores derived from the catalog, and the code that keeps them in step with it.

- ``base``: the ``VectorIndex`` contract (upsert, remove, search, range search, save, close);
- ``faiss`` / ``milvus``: the two store classes; ``stores``: which ``--store`` value names which
  (``check_store``);
- ``sync``: opening a store with its checks, catching it up with the catalog's change log, rebuilding it;
- ``select``: choosing, training and tuning the FAISS index kind; ``files``: safe names, atomic writes;
- ``text_probes``, ``synthetic``, ``bench_scale``: tuning queries, test data, the scale benchmark.

The names below are re-exported for callers that import them from the package.
"""

from __future__ import annotations

from glimpse.vectors.base import IndexDamagedError, IndexStorageError, SearchResult, VectorIndex
from glimpse.vectors.faiss import FaissIndex
from glimpse.vectors.stores import check_store
from glimpse.vectors.sync import (
    describe_store,
    index_problem,
    open_index,
    open_store,
    rebuild_index,
    rebuild_store,
    sync_index,
)

__all__ = ["FaissIndex", "IndexDamagedError", "IndexStorageError", "SearchResult", "VectorIndex", "check_store",
           "describe_store", "index_problem", "is_milvus_store", "open_index", "open_store", "rebuild_index",
           "rebuild_store", "sync_index"]


def is_milvus_store(store: str | None) -> bool:
    """Whether ``store`` names a Milvus store. Only for ``Library.__init__`` until it calls ``check_store``
    (then delete this): a value of no known form is False here, as it always was."""
    from glimpse.errors import UserInputError
    from glimpse.vectors.milvus import MilvusIndex
    from glimpse.vectors.stores import store_class

    try:
        return store_class(store) is MilvusIndex
    except UserInputError:
        return False
