"""Keeping a vector store in step with its catalog: opening (with checks), catching up, rebuilding.

A store is derived from the catalog. A persisted index is used only when it is its catalog's
(``index_problem``): built from this catalog (its ``catalog_id``), not ahead of the catalog's change log,
holding the catalog's vectors (a sample compared, FAISS) — else it is rebuilt (FAISS) or refilled (Milvus)
from the catalog with a one-line notice (``glimpse.notices``). Catching up replays the catalog changes newer
than the store's ``applied_change`` (``sync_index``), after which the vector count is checked. Which class
serves a ``--store`` value is ``stores.STORE_FORMS``'s business.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from glimpse.catalog import Catalog
from glimpse.errors import UserInputError
from glimpse.notices import notice
from glimpse.vectors import select
from glimpse.vectors.base import IndexDamagedError, IndexStorageError, VectorIndex
from glimpse.vectors.faiss import FaissIndex, check_directory
from glimpse.vectors.milvus import MilvusIndex
from glimpse.vectors.stores import check_store

# Catalog vectors compared with a persisted FAISS index on open: ~1 ms of lookups, a few index pages.
SAMPLE_VECTORS = 16


def rebuild_index(index: VectorIndex, catalog: Catalog) -> VectorIndex:
    """Refill ``index`` from every stored embedding of its model."""
    last = catalog.last_change()  # read before the vectors: later changes get replayed next time
    ids, vectors = catalog.embeddings(index.model_key)
    index.reset()
    if len(ids):
        index.upsert(ids, vectors)
    index.applied_change = last
    index.catalog_id = catalog.catalog_id
    return index


def index_problem(index: VectorIndex, catalog: Catalog) -> str | None:
    """Why the persisted ``index`` must not be used with ``catalog`` (it is to be rebuilt), or None.

    Not its catalog's: built from another catalog (``catalog_id``; an index left from a deleted catalog holds
    vectors under ids the new catalog gives to other files), or having applied changes the catalog has not
    made. For FAISS also: a sample of the catalog's vectors (files unchanged since the index's last applied
    change) must be in the index (``FaissIndex.verify_vectors``) — this also vets indexes from before
    ``catalog_id`` was recorded. The count is checked by ``sync_index`` once the index has caught up.
    """
    if index.catalog_id is not None and index.catalog_id != catalog.catalog_id:
        return "was built from another catalog (its catalog was replaced)"
    last = catalog.last_change()
    if index.applied_change > last:
        return f"has applied catalog change {index.applied_change}, but the catalog's last change is {last}"
    if not isinstance(index, FaissIndex):
        return None
    _, touched = catalog.changed_since(index.applied_change, index.model_key)
    sample = [i for i in catalog.sample_embedding_ids(index.model_key, SAMPLE_VECTORS) if i not in touched]
    ids, vectors = catalog.embeddings(index.model_key, sample)
    return index.verify_vectors(ids, vectors)


def catch_up(index: VectorIndex, catalog: Catalog) -> bool:
    """Replay the catalog changes newer than ``index.applied_change``; True if anything changed."""
    last, touched = catalog.changed_since(index.applied_change, index.model_key, metadata=index.stores_metadata)
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
    return changed


def sync_index(index: VectorIndex, catalog: Catalog) -> bool:
    """Apply catalog changes newer than ``index.applied_change``; returns True if anything changed.

    Replay is state based: each touched file id gets the catalog's *current* vector (or is removed),
    so replaying a change twice is harmless. If the count still disagrees with the catalog (a damaged
    or foreign index), the index is rebuilt, with a notice.
    """
    changed = catch_up(index, catalog)
    expected = catalog.count_embeddings(index.model_key)
    # A writer (another process, or the server's indexing job) may have committed a batch between the
    # replay and the count: catch up once more before calling the index damaged.
    if len(index) != expected and catch_up(index, catalog):
        changed = True
        expected = catalog.count_embeddings(index.model_key)
    if len(index) != expected:
        notice(f"the {index.model_key} vector index holds {len(index)} vectors but the catalog has {expected}; "
               "rebuilt it from the catalog")
        rebuild_index(index, catalog)
        changed = True
    return changed


def _trusted_index(directory: Path, catalog: Catalog, model_key: str, dim: int, *, save: bool) -> FaissIndex | None:
    """The persisted index if it can be used with ``catalog``; None when there is none or (after a notice)
    when it is damaged or not the catalog's, so the caller rebuilds it."""
    rebuilt = "rebuilt it from the catalog" + ("" if save else " in memory (`glimpse rebuild-index` saves it)")
    try:
        index = FaissIndex.load(directory, model_key, dim, mmap=not save)
    except IndexDamagedError as exc:
        notice(f"{exc}; {rebuilt}")
        return None
    if index is None:
        return None
    problem = index_problem(index, catalog)
    if problem is not None:
        notice(f"the vector index {index.index_path} {problem}; {rebuilt}")
        return None
    index.catalog_id = catalog.catalog_id  # an index from before catalog ids passed the sampled check: bind it
    return index


def open_index(directory: Path, catalog: Catalog, model_key: str, dim: int, *, save: bool = True,
               text_queries: Callable[[], np.ndarray] | None = None) -> FaissIndex:
    """Load the index of ``model_key`` (rebuilding it if missing) and catch it up with the catalog.

    Writers (``save``) also let ``select.maintain`` switch the index kind or retrain it when the
    collection outgrew it; readers memory-map big indexes and catch up in memory only — they never write,
    so a read-only library can be searched. A damaged index, or one that is not the catalog's
    (``index_problem``), is rebuilt with a notice. ``text_queries``: embedded text prompts an IVF index is
    tuned for too (``select.build``). IndexStorageError when ``directory`` is a file or saving fails.
    """
    index = _trusted_index(directory, catalog, model_key, dim, save=save)
    if index is None:
        index, _ = select.rebuilt(FaissIndex(directory, model_key, dim), catalog, text_queries=text_queries)
        changed = True
    else:
        changed = sync_index(index, catalog)
    if save:
        better = select.maintain(index, catalog, text_queries)
        if better is not None:
            index, changed = better, True
    if changed and save:
        index.save()
    return index


def open_store(store: str | None, directory: Path, catalog: Catalog, model_key: str, dim: int, *,
               save: bool = True, text_queries: Callable[[], np.ndarray] | None = None) -> VectorIndex:
    """The vector store of a library, caught up with its catalog.

    ``store``: any form of ``stores.STORE_FORMS`` — None or ``"faiss"``: the embedded FAISS index under
    ``directory`` (the default); a ``milvus://host:port`` / ``http://host:port`` URI: a Milvus server; a
    ``*.db`` path: milvus-lite. UserInputError for anything else.
    """
    uri = check_store(store)
    if uri is None:  # the embedded FAISS index
        return open_index(directory, catalog, model_key, dim, save=save, text_queries=text_queries)
    return open_milvus(uri, catalog, model_key, dim, save=save)


def open_milvus(uri: str, catalog: Catalog, model_key: str, dim: int, *, save: bool = True) -> MilvusIndex:
    """The Milvus collection of ``model_key`` at ``uri`` (normalised, ``stores.check_store``), caught up with
    ``catalog``: refilled first, with a notice, when it is not the catalog's (or records no catalog)."""
    index = MilvusIndex(uri, catalog, model_key, dim)
    problem = index_problem(index, catalog)
    if problem is None and index.catalog_id is None:
        problem = "records no catalog (it was made before collections were bound to their catalog)"
    if problem is not None:
        notice(f"the Milvus collection {index.collection} at {uri} {problem}; refilled it from the catalog")
        index.reset()
    if sync_index(index, catalog) and save:
        index.save()
    return index


def rebuild_store(store: str | None, directory: Path, catalog: Catalog, model_key: str, dim: int, *,
                  kind: str | None = None, recall_target: float | None = None,
                  text_queries: Callable[[], np.ndarray] | None = None) -> VectorIndex:
    """Rebuild a library's vector store from the catalog and save it.

    FAISS: ``kind`` (a factory string or ``"auto"``) and ``recall_target`` update the model's index
    policy first (``select.IndexPolicy``), then the index is trained, filled and tuned to it. Milvus
    manages its own index: the collection is refilled and ``kind`` must be left out.
    """
    uri = check_store(store)
    if uri is not None:  # Milvus
        if kind not in (None, "auto") or recall_target is not None:
            raise UserInputError("--kind and --recall-target tune the FAISS index; a Milvus store chooses its own")
        index = open_milvus(uri, catalog, model_key, dim, save=False)
        rebuild_index(index, catalog)
        index.save()
        return index
    check_directory(directory)
    if kind is not None:
        FaissIndex(directory, model_key, dim, kind.strip() if kind != "auto" else "Flat")  # refuses a bad kind now
    policy = select.update_policy(catalog, model_key, kind=kind.strip() if kind else None, recall_target=recall_target)
    index, _ = select.rebuilt(FaissIndex(directory, model_key, dim), catalog, policy, text_queries)
    index.save()
    return index


def describe_store(store: str | None, directory: Path, catalog: Catalog, model_key: str, dim: int
                   ) -> tuple[str, int]:
    """``(kind, vector count)`` of a library's store as it is persisted now (nothing is changed)."""
    uri = check_store(store)
    if uri is not None:  # Milvus
        index = open_milvus(uri, catalog, model_key, dim, save=False)
        try:
            return f"milvus {store} (collection {index.collection}, inner product)", len(index)
        finally:
            index.close()  # a client of its own, not the library's
    try:
        loaded = FaissIndex.load(directory, model_key, dim, mmap=True)
        problem = None if loaded is None else index_problem(loaded, catalog)
    except (IndexDamagedError, IndexStorageError) as exc:
        loaded, problem = None, str(exc)
    if problem is not None:
        return f"faiss (not usable: {problem}; searches rebuild it in memory, `glimpse rebuild-index` saves it)", 0
    if loaded is None:
        return "faiss (not built yet)", 0
    params = f", {loaded.search_params}" if loaded.search_params else ""
    wrapper = "IDMap2," if loaded.factory == "Flat" else ""
    return f"faiss {wrapper}{loaded.factory} (inner product{params})", len(loaded)
