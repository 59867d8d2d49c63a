"""The VectorIndex contract: a derived, rebuildable index of one model's embeddings.

An index holds ``(id, vector)`` pairs for one model key and remembers the id of the last catalog
change it has applied, so it can catch up from the change log instead of being rebuilt.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from glimpse.errors import GlimpseError, IndexMismatchError


class IndexDamagedError(GlimpseError):
    """A persisted vector index (file or manifest) is unreadable, inconsistent, or not its catalog's.

    Never shown as an error on its own: the opener rebuilds the index from the catalog with a notice.
    """


class IndexStorageError(GlimpseError):
    """The vector index folder cannot be used: a file stands where it should be, or saving failed (disk full,
    read-only). The message says what to do; a failed save leaves the previous index intact."""


@dataclass(frozen=True)
class SearchResult:
    """Best-first results of one query: ``ids`` int64[k'] and ``scores`` float32[k'] (inner product)."""

    ids: np.ndarray
    scores: np.ndarray


class VectorIndex(ABC):
    """Inner-product index over L2-normalised vectors of one model."""

    model_key: str
    dim: int
    applied_change: int
    #: ``Catalog.catalog_id`` of the catalog the index was built from (None: not recorded, an older index)
    catalog_id: str | None = None
    #: rows also hold file metadata (path, tags), so the store replays the catalog's metadata-only changes
    #: (moves, re-tagging) too — see ``Catalog.changed_since(metadata=)``
    stores_metadata: bool = False

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` as C-contiguous ``float32[n, dim]``; anything else is an IndexMismatchError."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise IndexMismatchError(
                f"vectors of shape {list(vectors.shape)} do not fit the {self.model_key} index "
                f"of dimension {self.dim}"
            )
        return vectors

    @abstractmethod
    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace ``int64[n]`` ids with ``float32[n, dim]`` vectors."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Remove ids that are present; returns how many were removed."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int) -> list[SearchResult]:
        """Top-``k`` per query of ``float32[q, dim]``, best first."""

    def search_filtered(self, queries: np.ndarray, k: int, *, path_prefixes: Sequence[str] = (),
                        tags: Sequence[str] = (), no_tags: Sequence[str] = ()) -> list[SearchResult] | None:
        """Top-``k`` per query of ``float32[q, dim]`` among the files matching the filters, filtered by the store.

        Kept: files inside any directory of ``path_prefixes`` (all files when empty) that carry every tag of
        ``tags`` and none of ``no_tags`` (tags compare like the catalog's: ASCII case-insensitive). Returns None
        when this store cannot apply these filters exactly; the caller then filters the results of ``search``.
        """
        return None

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def save(self) -> None:
        """Persist atomically (a crash leaves the old or the new index, never a torn one)."""
