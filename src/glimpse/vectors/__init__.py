"""Vector indexes derived from the catalog, and the code that keeps them in step with it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from glimpse.catalog import Catalog
from glimpse.vectors.base import SearchResult, VectorIndex
from glimpse.vectors.faiss import FaissIndex

__all__ = ["FaissIndex", "SearchResult", "VectorIndex", "open_index", "rebuild_index", "sync_index"]


def rebuild_index(index: FaissIndex, catalog: Catalog) -> FaissIndex:
    """Refill ``index`` from every stored embedding of its model."""
    last = catalog.last_change()  # read before the vectors: later changes get replayed next time
    ids, vectors = catalog.embeddings(index.model_key)
    index.reset()
    if len(ids):
        index.upsert(ids, vectors)
    index.applied_change = last
    return index


def sync_index(index: FaissIndex, catalog: Catalog) -> bool:
    """Apply catalog changes newer than ``index.applied_change``; returns True if anything changed.

    Replay is state based: each touched file id gets the catalog's *current* vector (or is removed),
    so replaying a change twice is harmless. If the count still disagrees with the catalog (a damaged
    or foreign index), the index is rebuilt.
    """
    last, touched = catalog.changed_since(index.applied_change, index.model_key)
    changed = False
    if touched:
        ids, vectors = catalog.embeddings(index.model_key, touched)
        gone = np.array(sorted(touched - set(ids.tolist())), dtype=np.int64)
        index.remove(gone)
        index.upsert(ids, vectors)
        changed = True
    if last != index.applied_change:
        index.applied_change = last
        changed = True
    if len(index) != catalog.count_embeddings(index.model_key):
        rebuild_index(index, catalog)
        changed = True
    return changed


def open_index(directory: Path, catalog: Catalog, model_key: str, dim: int, *, save: bool = True) -> FaissIndex:
    """Load the index of ``model_key`` (rebuilding it if missing) and catch it up with the catalog."""
    index = FaissIndex.load(directory, model_key, dim)
    if index is None:
        index = rebuild_index(FaissIndex(directory, model_key, dim), catalog)
        changed = True
    else:
        changed = sync_index(index, catalog)
    if changed and save:
        index.save()
    return index
