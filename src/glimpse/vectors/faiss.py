"""FAISS vector index: ``IndexIDMap2`` over inner product, persisted with a manifest.

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
        self._index = faiss.IndexIDMap2(faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT))

    # -- files -------------------------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        return self.directory / f"{_safe_name(self.model_key)}.faiss"

    @property
    def manifest_path(self) -> Path:
        return self.directory / f"{_safe_name(self.model_key)}.json"

    @classmethod
    def load(cls, directory: Path, model_key: str, dim: int) -> FaissIndex | None:
        """The persisted index of ``model_key``, or None when there is none (or it is unreadable)."""
        index = cls(directory, model_key, dim)
        try:
            manifest = json.loads(index.manifest_path.read_text(encoding="utf-8"))
            raw = index._faiss.read_index(str(index.index_path))
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
        }
        _atomic_write(
            self.manifest_path, lambda p: p.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        )

    # -- contents ----------------------------------------------------------------------------------
    def _check(self, vectors: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise IndexMismatchError(
                f"vectors of shape {list(vectors.shape)} do not fit the {self.model_key} index "
                f"of dimension {self.dim}"
            )
        return vectors

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = self._check(vectors)
        if len(ids) == 0:
            return
        self.remove(ids)
        self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if len(ids) == 0 or self._index.ntotal == 0:
            return 0
        return int(self._index.remove_ids(self._faiss.IDSelectorBatch(ids)))

    def reset(self) -> None:
        self._index.reset()
        self.applied_change = 0

    def search(self, queries: np.ndarray, k: int) -> list[SearchResult]:
        queries = self._check(np.atleast_2d(queries))
        k = min(int(k), len(self))
        if k <= 0:
            empty = SearchResult(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
            return [empty for _ in range(len(queries))]
        scores, ids = self._index.search(queries, k)
        results = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            keep = row_ids >= 0
            results.append(SearchResult(row_ids[keep].astype(np.int64), row_scores[keep].astype(np.float32)))
        return results

    def ids(self) -> np.ndarray:
        """All ids in the index, int64[n] (order unspecified)."""
        return self._faiss.vector_to_array(self._index.id_map).astype(np.int64)

    def __len__(self) -> int:
        return int(self._index.ntotal)
