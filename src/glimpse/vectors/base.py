"""The VectorIndex contract: a derived, rebuildable index of one model's embeddings.

An index holds ``(id, vector)`` pairs for one model key and remembers the id of the last catalog
change it has applied, so it can catch up from the change log instead of being rebuilt.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from glimpse.errors import GlimpseError, IndexMismatchError

#: query rows scored at once by a range search: memory stays ``RANGE_CHUNK x block`` scores (plus the matches)
RANGE_CHUNK = 1024
#: stored vectors scored at once by an exact range search (``exact_range_search``)
RANGE_BLOCK = 8192

#: per query row, ``(ids int64[m], scores float32[m])`` of the stored vectors scoring above a threshold
RangeResult = tuple[np.ndarray, np.ndarray]


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

    def search_among(self, queries: np.ndarray, k: int, ids: np.ndarray) -> list[SearchResult] | None:
        """Top-``k`` per query of ``float32[q, dim]`` among the stored vectors whose id is in ``ids`` (int64[m]),
        searched inside the store (e.g. the files a metadata filter keeps); None when this store cannot."""
        return None

    @abstractmethod
    def range_search(self, queries: np.ndarray, threshold: float) -> list[RangeResult]:
        """Per row of ``float32[q, dim]`` ``queries``: every stored vector scoring strictly above ``threshold``
        (inner product), as ``(ids int64[m], scores float32[m])``, best first (ties: lower id first).

        Runs ``RANGE_CHUNK`` query rows at a time, so memory stays bounded whatever ``q`` is. An approximate
        (IVF) store finds what its search finds: the vectors in the lists its tuned parameters probe.
        """

    @abstractmethod
    def __len__(self) -> int: ...

    def close(self) -> None:  # noqa: B027 -- a no-op on purpose: only client-server stores override it
        """Release what the store holds open (a client connection); the index is not used afterwards.

        Nothing to release for an in-process index: a no-op unless a store overrides it.
        """

    @abstractmethod
    def save(self) -> None:
        """Persist atomically (a crash leaves the old or the new index, never a torn one)."""


def empty_range(count: int) -> list[RangeResult]:
    """``count`` empty range-search rows."""
    return [(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)) for _ in range(count)]


def best_first(ids: np.ndarray, scores: np.ndarray) -> RangeResult:
    """``(ids int64[m], scores float32[m])`` ordered by descending score, then ascending id."""
    ids = np.asarray(ids, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float32)
    order = np.lexsort((ids, -scores))
    return ids[order], scores[order]


def exact_range_search(queries: np.ndarray, blocks: Iterable[tuple[np.ndarray, np.ndarray]], threshold: float,
                       *, chunk: int = RANGE_CHUNK) -> list[RangeResult]:
    """``VectorIndex.range_search`` by blocked matrix products: exact over the vectors ``blocks`` yields.

    ``queries``: ``float32[q, d]``; ``blocks``: ``(ids int64[b], vectors float32[b, d])`` pairs covering the
    store, each read once (so a store can stream them). Memory: one block and ``chunk x b`` scores at a time,
    plus the matches.
    """
    queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    threshold = float(threshold)
    found_ids: list[list[np.ndarray]] = [[] for _ in range(len(queries))]
    found_scores: list[list[np.ndarray]] = [[] for _ in range(len(queries))]
    for ids, vectors in blocks:
        if len(ids) == 0:
            continue
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        for start in range(0, len(queries), chunk):
            scores = queries[start:start + chunk] @ vectors.T
            rows, cols = np.nonzero(scores > threshold)  # row-major: the matches of each row are contiguous
            bounds = np.searchsorted(rows, np.arange(len(scores) + 1))
            for row in np.flatnonzero(np.diff(bounds)):
                hit = cols[bounds[row]:bounds[row + 1]]
                found_ids[start + row].append(ids[hit])
                found_scores[start + row].append(scores[row, hit])
    out = empty_range(len(queries))
    for row, parts in enumerate(found_ids):
        if parts:
            out[row] = best_first(np.concatenate(parts), np.concatenate(found_scores[row]))
    return out
