"""FAISS vector index: ``IndexIDMap2`` over inner product (flat), or an IVF index for big collections.

A ``Flat`` factory is wrapped in ``IndexIDMap2``; any other factory (chosen by
:mod:`glimpse.vectors.select`) must be an IVF one: it stores the ids itself and gets a hash-table direct
map, so vectors are added and removed in place under their stable catalog ids. IVF indexes must be
trained before the first add (``select.train``) and carry their tuned search parameters (``nprobe=…``)
and the vector count they were trained on in the manifest.

Files for model key K in the library's ``index/`` directory:
``<K>.faiss`` (the index) and ``<K>.json`` (manifest: key, dim, factory string, applied change id,
vector count). Both are written to a temporary name, fsync'ed and renamed, index first: a crash
between the two renames leaves a manifest that is *older* than the index, and replaying changes is
idempotent (upsert = remove + add), so the pair is always usable.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from glimpse.errors import IndexMismatchError
from glimpse.vectors.base import SearchResult, VectorIndex

MANIFEST_VERSION = 1
DEFAULT_FACTORY = "Flat"
# Indexes bigger than this are memory-mapped by read-only openers (search) instead of read into RAM.
MMAP_MIN_BYTES = 256 * 1024 * 1024
# A single query scanning at least this many codes splits its inverted lists across the OpenMP threads.
PARALLEL_SCAN_MIN = 100_000


def is_flat(factory: str) -> bool:
    """True for the exact factory, which lives inside an ``IndexIDMap2``."""
    return factory.strip() == "Flat"


def _safe_name(model_key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model_key)


def _atomic_write(path: Path, write: Any) -> None:
    # A unique temporary name: a search process may save a caught-up index while indexing saves too.
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    write(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class FaissIndex(VectorIndex):
    """An ``IndexIDMap2`` of ``factory`` (inner product) over one model's vectors."""

    def __init__(self, directory: Path, model_key: str, dim: int, factory: str = DEFAULT_FACTORY) -> None:
        import faiss

        self.directory = Path(directory)
        self.model_key = model_key
        self.dim = dim
        self.factory = factory
        self.applied_change = 0
        self._faiss = faiss
        #: vectors the (IVF) index was trained on, and its tuned search parameters ("nprobe=16")
        self.trained_on = 0
        self.search_params = ""
        #: how select.maintain chose the factory (its policy), so a changed policy triggers a rebuild
        self.chosen_by: dict[str, Any] = {}
        self._mapped = False  # memory-mapped from disk: read-only until _materialize()
        if is_flat(factory):
            self._index = faiss.IndexIDMap2(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT))
        else:
            self._index = self._new_ivf(factory)

    def _new_ivf(self, factory: str) -> Any:
        try:
            index = self._faiss.index_factory(self.dim, factory, self._faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise IndexMismatchError(
                f"{factory!r} is not a FAISS factory string faiss can build for dimension {self.dim}: "
                f"{str(exc).splitlines()[-1]}; use e.g. 'Flat', 'IVF1024,SQ8' or 'IVF4096,PQ64'"
            ) from exc
        try:
            ivf = self._faiss.extract_index_ivf(index)
        except RuntimeError as exc:
            raise IndexMismatchError(
                f"{factory!r} is not an IVF index: glimpse updates indexes in place and needs 'Flat' or an "
                "IVF factory (HNSW only as the IVF quantizer, e.g. 'IVF65536_HNSW32,SQ8')"
            ) from exc
        # Stable ids: the lists store catalog ids; the hash table finds them for remove/reconstruct.
        ivf.set_direct_map_type(self._faiss.DirectMap.Hashtable)
        return index

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    @property
    def native(self) -> Any:
        """The underlying faiss index (for training and tuning in ``select``)."""
        return self._index

    def set_search_params(self, params: str) -> None:
        """Apply faiss ``ParameterSpace`` settings such as ``"nprobe=16"`` (empty: defaults)."""
        if params:
            self._faiss.ParameterSpace().set_index_parameters(self._index, params)
        self.search_params = params

    def _materialize(self) -> None:
        """A memory-mapped index is read-only: read it fully before the first change."""
        if self._mapped:
            self._index = self._faiss.read_index(str(self.index_path))
            self._mapped = False
            self.set_search_params(self.search_params)

    # -- files -------------------------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        return self.directory / f"{_safe_name(self.model_key)}.faiss"

    @property
    def manifest_path(self) -> Path:
        return self.directory / f"{_safe_name(self.model_key)}.json"

    @classmethod
    def load(cls, directory: Path, model_key: str, dim: int, *, mmap: bool = False) -> FaissIndex | None:
        """The persisted index of ``model_key``, or None when there is none (or it is unreadable).

        ``mmap``: memory-map an index file bigger than ``MMAP_MIN_BYTES`` instead of reading it (pages
        are loaded on demand and shared between processes); it is read fully on its first change.
        """
        index = cls(directory, model_key, dim)
        try:
            manifest = json.loads(index.manifest_path.read_text(encoding="utf-8"))
            mapped = mmap and index.index_path.stat().st_size >= MMAP_MIN_BYTES
            # IO_FLAG_MMAP_IFC maps the inverted lists in place (zero copy): scans run as fast as from RAM.
            # Plain IO_FLAG_MMAP converts them to OnDiskInvertedLists, ~1.5x slower per query at 1M.
            flags = getattr(index._faiss, "IO_FLAG_MMAP_IFC", index._faiss.IO_FLAG_MMAP) if mapped else 0
            raw = index._faiss.read_index(str(index.index_path), flags)
        except (OSError, ValueError, RuntimeError):
            return None  # missing or damaged: the caller rebuilds from the catalog
        if manifest.get("model_key") != model_key:
            raise IndexMismatchError(
                f"{index.manifest_path} belongs to model {manifest.get('model_key')!r}, not {model_key!r}; "
                "run `glimpse rebuild-index`"
            )
        if manifest.get("dim") != dim or raw.d != dim:
            raise IndexMismatchError(
                f"the index for {model_key} has dimension {raw.d} but the model gives {dim}; "
                "run `glimpse rebuild-index`"
            )
        index._index = raw  # read_index returns the concrete class (downcasting would drop ownership)
        index.factory = manifest.get("factory", DEFAULT_FACTORY)
        index.applied_change = int(manifest.get("applied_change", 0))
        index.trained_on = int(manifest.get("trained_on", 0))
        index.chosen_by = dict(manifest.get("chosen_by", {}))
        index._mapped = mapped
        index.set_search_params(str(manifest.get("search_params", "")))
        return index

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.index_path, lambda p: self._faiss.write_index(self._index, str(p)))
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "model_key": self.model_key,
            "dim": self.dim,
            "factory": self.factory,
            "applied_change": self.applied_change,
            "count": len(self),
            "trained_on": self.trained_on,
            "search_params": self.search_params,
            "chosen_by": self.chosen_by,
        }
        _atomic_write(
            self.manifest_path, lambda p: p.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        )

    # -- contents ----------------------------------------------------------------------------------
    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = self._check(vectors)
        if len(ids) == 0:
            return
        if not self._index.is_trained:
            raise IndexMismatchError(
                f"the {self.factory} index of {self.model_key} is not trained yet; rebuild it "
                "(`glimpse rebuild-index`), which trains it on the stored embeddings"
            )
        self.remove(ids)
        self._materialize()
        self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) == 0 or self._index.ntotal == 0:
            return 0
        self._materialize()
        if not is_flat(self.factory):  # the IVF hash-table direct map only takes an id array
            return int(self._index.remove_ids(self._faiss.IDSelectorArray(ids)))
        return int(self._index.remove_ids(self._faiss.IDSelectorBatch(ids)))

    def reset(self) -> None:
        self._materialize()
        self._index.reset()  # an IVF index keeps its training (centroids, codebooks)
        self.applied_change = 0

    def search(self, queries: np.ndarray, k: int) -> list[SearchResult]:
        queries = self._check(np.atleast_2d(queries))
        k = min(int(k), len(self))
        if k <= 0:
            empty = SearchResult(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
            return [empty for _ in range(len(queries))]
        scores, ids = self._search(queries, k)
        results = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            keep = row_ids >= 0
            results.append(SearchResult(row_ids[keep].astype(np.int64), row_scores[keep].astype(np.float32)))
        return results

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        ivf = None if is_flat(self.factory) else self._faiss.extract_index_ivf(self._index)
        if len(queries) > 1:
            if ivf is not None:
                ivf.parallel_mode = 0  # threads share out the queries
            return self._index.search(queries, k)
        # One query: OpenMP's thread start-up and hand-off cost more than a small scan (measured 60 ms vs
        # 0.4 ms for 20k vectors on a busy 2-core machine), so run it on the calling thread -- unless it
        # scans many IVF lists: then the threads share out the lists (parallel_mode 1), which halves a 1M
        # IVF1024,SQ8 query at nprobe 200 on 2 cores (9.8 -> 5.2 ms, benchmarks/index_scale.py).
        # codes one query scans: nprobe lists' worth
        parallel = ivf is not None and len(self) * min(ivf.nprobe, ivf.nlist) // ivf.nlist >= PARALLEL_SCAN_MIN
        threads = self._faiss.omp_get_max_threads()
        if parallel:
            ivf.parallel_mode = 1
        else:
            self._faiss.omp_set_num_threads(1)
        try:
            return self._index.search(queries, k)
        finally:
            self._faiss.omp_set_num_threads(threads)

    def ids(self) -> np.ndarray:
        """All ids in the index, int64[n] (order unspecified)."""
        if not is_flat(self.factory):
            invlists = self._faiss.extract_index_ivf(self._index).invlists
            parts = [self._faiss.rev_swig_ptr(invlists.get_ids(lst), invlists.list_size(lst)).copy()
                     for lst in range(invlists.nlist) if invlists.list_size(lst)]
            return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
        return self._faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def __len__(self) -> int:
        return int(self._index.ntotal)
