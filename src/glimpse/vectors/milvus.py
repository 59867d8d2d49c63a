"""Milvus vector store: the same VectorIndex contract, served by Milvus (a server, a cluster, or milvus-lite).

``MilvusIndex(uri, catalog, model_key, dim)``: a file path is milvus-lite (embedded, one process), a
``milvus://host:port`` or ``http(s)://host:port`` URI is a Milvus server or cluster (token from
``$GLIMPSE_MILVUS_TOKEN`` when it needs one). One collection per model key holds

    id INT64 (catalog file id, primary key) | vector FLOAT_VECTOR[dim] | path VARCHAR | tags ARRAY<VARCHAR>

so path-prefix and tag filters run inside Milvus (``search(..., path_prefix=, tags=, no_tags=)``, and
``search_filtered``, which ``Library`` searches use). Like the FAISS index it is derived from the catalog:
the id of the last catalog change it applied and the ``Catalog.catalog_id`` it was filled from are stored as
collection properties (``vectors.sync.open_store`` refills a collection of another catalog, or of none recorded),
and ``vectors.sync_index`` replays newer changes (upserts and deletes) into it, including metadata-only ones
(a move changes the path, tagging the tags), so the filters see what the catalog holds.

``path`` is the catalog path as ``FileRecord.display_path`` (undecodable bytes as U+FFFD); ``tags`` are the
file's tags folded to ASCII lower case, as the catalog compares them (``COLLATE NOCASE``). Collections made
before rows were kept this way lack ``FILTERS_PROPERTY``: ``search_filtered`` declines for them (the caller
filters instead) until ``glimpse rebuild-index`` refills the collection.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from glimpse.catalog import Catalog, prefix_range
from glimpse.errors import GlimpseError, IndexMismatchError, UserInputError
from glimpse.vectors.base import RangeResult, SearchResult, VectorIndex, empty_range, exact_range_search

APPLIED_PROPERTY = "glimpse.applied_change"
# The catalog the rows came from: a collection filled from another (e.g. deleted and re-made) catalog holds
# vectors under ids that now name other files.
CATALOG_PROPERTY = "glimpse.catalog_id"
# Set on collections whose rows hold folded tags and follow metadata changes: filters there are exact.
FILTERS_PROPERTY = "glimpse.filters"
FILTERS_VERSION = "1"
TOKEN_ENV = "GLIMPSE_MILVUS_TOKEN"
MAX_PATH = 4096
MAX_TAGS = 256
MAX_TAG_LENGTH = 256
# Milvus refuses gRPC messages over 64 MB; insert batches aim at ~16 MB (≈ 8k rows of 512-d vectors),
# which measured as fast as bigger ones while keeping the client's memory small.
BATCH_BYTES = 16 * 2**20
MAX_BATCH_ROWS = 10_000
DELETE_BATCH = 10_000

#: returns the tags of some file ids; absent ids have none
TagSource = Callable[[Sequence[int]], dict[int, list[str]]]


class MilvusError(GlimpseError):
    """The Milvus store cannot be reached or refused an operation."""


def collection_name(model_key: str) -> str:
    """A valid Milvus collection name (letters, digits, underscores) for a model key."""
    return "glimpse_" + re.sub(r"[^A-Za-z0-9_]", "_", model_key)[:200]


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def fold_tag(tag: str) -> str:
    """``tag`` with A-Z lowered and nothing else: SQLite's NOCASE, which the catalog's tag filters use."""
    return tag.translate(_ASCII_LOWER)


def _string_literal(text: str) -> str:
    """``text`` as a double-quoted Milvus string literal."""
    return '"' + re.sub(r'([\\"])', r"\\\1", text) + '"'


def _path_range(prefix: str) -> str:
    # A byte range, like the catalog's: no LIKE wildcards (% and _ are common in file names) to escape.
    lo, hi = (bound.decode("utf-8", "replace") for bound in prefix_range(prefix))
    return f"path >= {_string_literal(lo)} and path < {_string_literal(hi)}"


# The most ids an ``id in [...]`` filter carries (about 60 kB of expression).
MAX_ID_FILTER = 5000

def filter_expression(path_prefix: str | Sequence[str] | None = None, tags: Sequence[str] = (),
                      no_tags: Sequence[str] = ()) -> str:
    """A Milvus boolean expression: files inside directory ``path_prefix`` (or inside any of several) carrying
    every tag in ``tags`` and none in ``no_tags`` (tags folded like the stored ones, see ``fold_tag``)."""
    prefixes = [path_prefix] if isinstance(path_prefix, str) else list(path_prefix or ())
    prefixes = [p for p in prefixes if p]
    parts = []
    if len(prefixes) == 1:
        parts.append(_path_range(prefixes[0]))
    elif prefixes:
        parts.append("(" + " or ".join(f"({_path_range(p)})" for p in prefixes) + ")")
    parts += [f"array_contains(tags, {_string_literal(fold_tag(tag))})" for tag in tags]
    parts += [f"not array_contains(tags, {_string_literal(fold_tag(tag))})" for tag in no_tags]
    return " and ".join(parts)


def _stored_exactly(prefix: str) -> bool:
    """Whether the stored paths in ``prefix``'s range are exactly the files inside it.

    Stored paths show undecodable bytes as U+FFFD, so a prefix that is not valid UTF-8, or holds U+FFFD
    itself, would also take in other folders whose names differ only in such bytes.
    """
    try:
        text = os.fsencode(prefix).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return "\ufffd" not in text and len(text) < MAX_PATH


def _client_uri(uri: str) -> str:
    if uri.startswith("milvus://"):
        return "http://" + uri[len("milvus://"):]
    return uri


class MilvusIndex(VectorIndex):
    """Inner-product search over one model's vectors in a Milvus collection."""

    stores_metadata = True

    def __init__(self, uri: str, catalog: Catalog, model_key: str, dim: int, *, tag_source: TagSource | None = None,
                 index_type: str = "AUTOINDEX") -> None:
        """``tag_source``: where row tags come from (default: the catalog's tags of each file)."""
        try:
            from pymilvus import MilvusClient
        except ImportError as exc:
            raise UserInputError(
                "a Milvus store needs pymilvus (and milvus-lite for a .db file): pip install 'glimpse[milvus]'"
            ) from exc
        self.uri = uri
        self.catalog = catalog
        self.model_key = model_key
        self.dim = dim
        self.collection = collection_name(model_key)
        self.index_type = index_type
        # Default: the catalog's tags (written by `glimpse tag`), as they are when a vector is upserted.
        self.tag_source = tag_source or (lambda ids: {i: [t for t, _ in tags]
                                                      for i, tags in catalog.tags_of(ids).items()})
        self.applied_change = 0
        #: rows follow the catalog's paths and tags (FILTERS_PROPERTY): search_filtered may filter here
        self.filterable = False
        try:
            self._client = MilvusClient(_client_uri(uri), token=os.environ.get(TOKEN_ENV, ""))
        except Exception as exc:  # pymilvus raises its own hierarchy and plain gRPC/OS errors
            raise MilvusError(
                f"cannot open the Milvus store {uri}: {exc}. For a server give milvus://HOST:19530 and check "
                "that it is running; for milvus-lite give a writable file path ending in .db"
            ) from exc
        if self._client.has_collection(self.collection):
            self._check_existing()
        else:
            self._create()

    # -- collection ----------------------------------------------------------------------------------
    def _create(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        schema.add_field("path", DataType.VARCHAR, max_length=MAX_PATH)
        schema.add_field("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=MAX_TAGS,
                         max_length=MAX_TAG_LENGTH)
        params = self._client.prepare_index_params()
        params.add_index(field_name="vector", index_type=self.index_type, metric_type="IP")
        # Strong consistency: a search right after indexing must see what was just written.
        self._client.create_collection(self.collection, schema=schema, index_params=params,
                                       consistency_level="Strong",
                                       properties={APPLIED_PROPERTY: "0", FILTERS_PROPERTY: FILTERS_VERSION,
                                                   CATALOG_PROPERTY: self.catalog.catalog_id or ""})
        self.applied_change = 0
        self.catalog_id = self.catalog.catalog_id
        self.filterable = True

    def _check_existing(self) -> None:
        info = self._client.describe_collection(self.collection)
        vector = next((f for f in info.get("fields", []) if f.get("name") == "vector"), None)
        found = int((vector or {}).get("params", {}).get("dim", -1))
        if found != self.dim:
            raise IndexMismatchError(
                f"the Milvus collection {self.collection} at {self.uri} holds vectors of dimension {found} but "
                f"{self.model_key} gives {self.dim}; drop the collection or use another store"
            )
        properties = info.get("properties", {})
        self.catalog_id = properties.get(CATALOG_PROPERTY) or None
        try:
            self.applied_change = int(properties.get(APPLIED_PROPERTY, 0))
        except ValueError:  # not ours, or damaged: unbound, so open_store refills it
            self.applied_change, self.catalog_id = 0, None
        self.filterable = properties.get(FILTERS_PROPERTY) == FILTERS_VERSION

    def save(self) -> None:
        """Record the applied change id; flushed so a server persists the segments first."""
        self._client.flush(self.collection)
        self._client.alter_collection_properties(self.collection,
                                                 properties={APPLIED_PROPERTY: str(self.applied_change)})

    def reset(self) -> None:
        self._client.drop_collection(self.collection)
        self._create()

    # -- contents ------------------------------------------------------------------------------------
    def _rows(self, ids: np.ndarray, vectors: np.ndarray) -> list[dict[str, Any]]:
        # A video's frames carry the video's path and tags, so folder and tag filters apply to them inside Milvus.
        items = self.catalog.items_by_id(ids.tolist())
        tags = self.tag_source(sorted({item.file.id for item in items.values()}))
        rows = []
        for item_id, vector in zip(ids.tolist(), vectors, strict=True):
            item = items.get(item_id)
            path = item.file.display_path if item is not None else ""
            names = tags.get(item.file.id, []) if item is not None else []
            # Folded and deduplicated (sources may spell a tag differently); best first, so a cut keeps the best.
            tag_list = list(dict.fromkeys(fold_tag(t)[:MAX_TAG_LENGTH] for t in names))[:MAX_TAGS]
            rows.append({"id": item_id, "vector": vector.tolist(), "path": path[:MAX_PATH], "tags": tag_list})
        return rows

    def batch_rows(self) -> int:
        """Rows per insert request: ~BATCH_BYTES of vectors and paths."""
        return max(1, min(MAX_BATCH_ROWS, BATCH_BYTES // (4 * self.dim + 256)))

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = self._check(vectors)
        step = self.batch_rows()
        for start in range(0, len(ids), step):
            self._client.upsert(self.collection, self._rows(ids[start : start + step], vectors[start : start + step]))

    def _present(self, ids: list[int]) -> list[int]:
        marks = ",".join(str(i) for i in ids)
        rows = self._client.query(self.collection, filter=f"id in [{marks}]", output_fields=["id"])
        return [int(r["id"]) for r in rows]

    def remove(self, ids: np.ndarray) -> int:
        removed = 0
        ids_list = [int(i) for i in np.asarray(ids, dtype=np.int64)]
        for start in range(0, len(ids_list), DELETE_BATCH):
            present = self._present(ids_list[start : start + DELETE_BATCH])
            if present:
                self._client.delete(self.collection, ids=present)
                removed += len(present)
        return removed

    def search(self, queries: np.ndarray, k: int, *, path_prefix: str | Sequence[str] | None = None,
               tags: Sequence[str] = (), no_tags: Sequence[str] = ()) -> list[SearchResult]:
        """Top-``k`` per query of ``float32[q, dim]``, best first, optionally filtered inside Milvus
        (see ``filter_expression``)."""
        queries = self._check(np.atleast_2d(queries))
        if k < 1 or len(queries) == 0:
            return [SearchResult(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)) for _ in queries]
        return self._searched(queries, int(k), filter_expression(path_prefix, tags, no_tags))

    def _searched(self, queries: np.ndarray, k: int, expression: str) -> list[SearchResult]:
        """Milvus' top-``k`` per query under the filter ``expression``, best first."""
        hits = self._client.search(self.collection, data=queries.tolist(), limit=k, filter=expression,
                                   search_params={"metric_type": "IP"}, output_fields=["id"])
        results = []
        for row in hits:
            ids = np.array([int(h["id"]) for h in row], dtype=np.int64)
            scores = np.array([float(h["distance"]) for h in row], dtype=np.float32)
            order = np.argsort(-scores, kind="stable")
            results.append(SearchResult(ids[order], scores[order]))
        return results

    def search_among(self, queries: np.ndarray, k: int, ids: np.ndarray) -> list[SearchResult] | None:
        """``VectorIndex.search_among`` as an ``id in [...]`` filter inside Milvus, for up to ``MAX_ID_FILTER`` ids
        (None above: the expression would grow past what a request should carry)."""
        queries = self._check(np.atleast_2d(queries))
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) > MAX_ID_FILTER:
            return None
        if k < 1 or len(ids) == 0 or len(queries) == 0:
            return [SearchResult(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)) for _ in queries]
        return self._searched(queries, int(min(k, len(ids))), f"id in [{','.join(str(int(i)) for i in ids)}]")

    def search_filtered(self, queries: np.ndarray, k: int, *, path_prefixes: Sequence[str] = (),
                        tags: Sequence[str] = (), no_tags: Sequence[str] = ()) -> list[SearchResult] | None:
        """``search`` with the filters inside Milvus, or None where they would not be exact: a collection
        from before FILTERS_PROPERTY, a prefix that stored paths cannot represent, a tag longer than stored."""
        if not self.filterable or not all(_stored_exactly(p) for p in path_prefixes):
            return None
        if any(len(tag) > MAX_TAG_LENGTH for tag in [*tags, *no_tags]):
            return None
        return self.search(queries, k, path_prefix=list(path_prefixes), tags=tags, no_tags=no_tags)

    def range_search(self, queries: np.ndarray, threshold: float) -> list[RangeResult]:
        """``VectorIndex.range_search``, exact: blocked products over the vectors the collection holds.

        Milvus' own range search (``radius``) returns at most ``limit`` (16384) hits per query, so it cannot
        promise *every* vector above the threshold; the collection's vectors are streamed instead, once,
        ``batch_rows()`` at a time, and scored here.
        """
        queries = self._check(np.atleast_2d(queries))
        if len(queries) == 0:
            return empty_range(0)
        return exact_range_search(queries, self._stored_blocks(), threshold)

    def _stored_blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(ids int64[b], float32[b, dim])`` blocks of every row of the collection."""
        iterator = self._client.query_iterator(self.collection, batch_size=self.batch_rows(), filter="id >= 0",
                                               output_fields=["id", "vector"])
        try:
            while batch := iterator.next():
                yield (np.array([int(r["id"]) for r in batch], dtype=np.int64),
                       np.array([r["vector"] for r in batch], dtype=np.float32).reshape(len(batch), self.dim))
        finally:
            iterator.close()

    def ids(self) -> np.ndarray:
        """All ids in the collection, int64[n] (order unspecified)."""
        out: list[int] = []
        iterator = self._client.query_iterator(self.collection, batch_size=MAX_BATCH_ROWS, filter="id >= 0",
                                               output_fields=["id"])
        while batch := iterator.next():
            out += [int(r["id"]) for r in batch]
        iterator.close()
        return np.array(out, dtype=np.int64)

    def __len__(self) -> int:
        rows = self._client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def close(self) -> None:
        """Close the client connection (milvus-lite: the embedded server's handle)."""
        self._client.close()
