"""FAISS vector index: ``IndexIDMap2`` over inner product (flat), or an IVF index for big collections.

A ``Flat`` factory is wrapped in ``IndexIDMap2``; any other factory (chosen by
:mod:`glimpse.vectors.select`) must be an IVF one: it stores the ids itself and gets a hash-table direct
map, so vectors are added and removed in place under their stable catalog ids. IVF indexes must be
trained before the first add (``select.train``) and carry their tuned search parameters (``nprobe=…``)
and the vector count they were trained on in the manifest.

Files for model key K in the library's ``index/`` directory:
``<K>.faiss`` (the index) and ``<K>.json`` (manifest: key, dim, factory string, applied change id,
vector count, the id of the catalog it was built from, a CRC-32 of the index file). Both are written to
temporary names and fsync'ed, then renamed, index first; a failed write (disk full) removes both
temporaries and leaves the previous pair as it was. A crash between the two renames leaves a manifest
whose checksum does not match the new index: the opener rebuilds it from the catalog.

``load`` checks what it can without the catalog (a readable manifest of the right shape, the checksum
whenever the file is read fully, the vector count); ``verify_vectors`` compares a sample of the catalog's
vectors with the index's (see ``vectors.index_problem``).
"""

from __future__ import annotations

import errno
import json
import os
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from glimpse.errors import IndexMismatchError
from glimpse.vectors.base import (
    RANGE_BLOCK,
    RANGE_CHUNK,
    IndexDamagedError,
    IndexStorageError,
    RangeResult,
    SearchResult,
    VectorIndex,
    best_first,
    empty_range,
    exact_range_search,
)
from glimpse.vectors.files import fsync_file, safe_name, temporary_path, write_bytes

# 2: adds catalog_id and checksum (version-1 manifests still load; they are checked by sampling only)
MANIFEST_VERSION = 2
DEFAULT_FACTORY = "Flat"
# Indexes bigger than this are memory-mapped by read-only openers (search) instead of read into RAM.
MMAP_MIN_BYTES = 256 * 1024 * 1024
# A single query scanning at least this many codes splits its inverted lists across the OpenMP threads.
PARALLEL_SCAN_MIN = 100_000
# A search that found fewer than k vectors in the probed lists probes this many times more lists, up to all.
NPROBE_WIDEN = 4
CHECKSUM_CHUNK = 4 * 2**20
# Searches verify_vectors runs to check that scores are cosines (garbage vectors score ~1e37 or NaN).
SCORE_CHECK_QUERIES = 2
_SEARCH_PARAMS = re.compile(r"[A-Za-z_]+=[0-9]+(\.[0-9]+)?(,[A-Za-z_]+=[0-9]+(\.[0-9]+)?)*")


def is_flat(factory: str) -> bool:
    """True for the exact factory, which lives inside an ``IndexIDMap2``."""
    return factory.strip() == "Flat"


def file_checksum(path: Path) -> str:
    """``"crc32:<8 hex digits>"`` of a file's bytes, read in chunks (CRC-32 runs at ~1 GB/s here)."""
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHECKSUM_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return f"crc32:{crc:08x}"


def check_directory(directory: Path) -> None:
    """Refuse an index folder that is not a folder (a file in its place) with what to do about it."""
    if directory.exists() and not directory.is_dir():
        raise IndexStorageError(
            f"{directory} is a file, but glimpse keeps the library's vector indexes in a folder of that name; "
            "move the file away (the index is rebuilt from the catalog)"
        )


def _save_failed(path: Path, exc: BaseException) -> IndexStorageError:
    """One line for a save that failed with ``exc`` (an OSError, or faiss' RuntimeError for a failed write)."""
    code = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
    if code == errno.ENOSPC:
        advice = "free some disk space, then run `glimpse rebuild-index`"
    elif code in (errno.EROFS, errno.EACCES, errno.EPERM):
        advice = "the library folder is not writable: searches still work, indexing needs write access"
    else:
        advice = "check the library folder, then run `glimpse rebuild-index`"
    return IndexStorageError(
        f"cannot save the vector index {path}: {reason}; {advice} (the catalog is intact and the previous "
        "index is kept)"
    )


def _field(manifest: dict[str, Any], name: str, kind: type, default: Any, path: Path) -> Any:
    """``manifest[name]`` checked to be a ``kind`` (ints: not bools, not negative); ``default`` when absent."""
    if name not in manifest:
        if default is _REQUIRED:
            raise IndexDamagedError(f"the manifest {path} lacks {name!r}")
        return default
    value = manifest[name]
    wrong = not isinstance(value, kind) or (kind is int and (isinstance(value, bool) or value < 0))
    if wrong and not (value is None and default is None):
        raise IndexDamagedError(f"the manifest {path} has {name!r} = {json.dumps(value)[:60]}, not a {kind.__name__}")
    return value


_REQUIRED = object()


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at ``path`` with every field checked and defaulted; None when there is none.

    Raises IndexDamagedError for anything else than a JSON object of the expected fields.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexDamagedError(f"the manifest {path} cannot be read ({exc})") from exc
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise IndexDamagedError(f"the manifest {path} is not JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise IndexDamagedError(f"the manifest {path} is not a JSON object")
    manifest = {
        "model_key": _field(raw, "model_key", str, _REQUIRED, path),
        "dim": _field(raw, "dim", int, _REQUIRED, path),
        "applied_change": _field(raw, "applied_change", int, _REQUIRED, path),
        "factory": _field(raw, "factory", str, DEFAULT_FACTORY, path),
        "count": _field(raw, "count", int, None, path),
        "trained_on": _field(raw, "trained_on", int, 0, path),
        "search_params": _field(raw, "search_params", str, "", path),
        "chosen_by": _field(raw, "chosen_by", dict, {}, path),
        "catalog_id": _field(raw, "catalog_id", str, None, path),
        "checksum": _field(raw, "checksum", str, None, path),
    }
    params = manifest["search_params"]
    if params and (not _SEARCH_PARAMS.fullmatch(params) or any(float(p.split("=")[1]) <= 0 for p in params.split(","))):
        raise IndexDamagedError(f"the manifest {path} has unusable search_params {manifest['search_params']!r}")
    return manifest


class FaissIndex(VectorIndex):
    """An ``IndexIDMap2`` of ``factory`` (inner product) over one model's vectors."""

    def __init__(self, directory: Path, model_key: str, dim: int, factory: str = DEFAULT_FACTORY) -> None:
        import faiss

        self.directory = Path(directory)
        self.model_key = model_key
        self.dim = dim
        self.factory = factory
        self.applied_change = 0
        self.catalog_id: str | None = None
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
    def mapped(self) -> bool:
        """Whether the index is memory-mapped from its file (read-only until a write materialises it)."""
        return self._mapped

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
        return self.directory / f"{safe_name(self.model_key)}.faiss"

    @property
    def manifest_path(self) -> Path:
        return self.directory / f"{safe_name(self.model_key)}.json"

    @classmethod
    def load(cls, directory: Path, model_key: str, dim: int, *, mmap: bool = False) -> FaissIndex | None:
        """The persisted index of ``model_key``, or None when none was saved.

        ``mmap``: memory-map an index file bigger than ``MMAP_MIN_BYTES`` instead of reading it (pages
        are loaded on demand and shared between processes); it is read fully on its first change.
        Raises IndexDamagedError when the files are there but unusable (bad manifest, missing or unreadable
        index file, checksum or count mismatch: the caller rebuilds), IndexMismatchError when they belong to
        another model or dimension, IndexStorageError when ``directory`` is a file.
        """
        index = cls(directory, model_key, dim)
        check_directory(index.directory)
        manifest = read_manifest(index.manifest_path)
        if manifest is None:
            return None
        if manifest["model_key"] != model_key:
            raise IndexMismatchError(
                f"{index.manifest_path} belongs to model {manifest['model_key']!r}, not {model_key!r}; "
                "run `glimpse rebuild-index`"
            )
        raw = index._read_native(manifest, mmap)
        if manifest["dim"] != dim or raw.d != dim:
            raise IndexMismatchError(
                f"the index for {model_key} has dimension {raw.d} but the model gives {dim}; "
                "run `glimpse rebuild-index`"
            )
        if manifest["count"] is not None and manifest["count"] != raw.ntotal:
            raise IndexDamagedError(
                f"{index.index_path} holds {raw.ntotal} vectors but its manifest says {manifest['count']}"
            )
        if is_flat(manifest["factory"]) != isinstance(raw, index._faiss.IndexIDMap2):
            raise IndexDamagedError(f"{index.index_path} is not the {manifest['factory']!r} index its manifest names")
        index._index = raw  # read_index returns the concrete class (downcasting would drop ownership)
        index.factory = manifest["factory"]
        index.applied_change = manifest["applied_change"]
        index.trained_on = manifest["trained_on"]
        index.chosen_by = dict(manifest["chosen_by"])
        index.catalog_id = manifest["catalog_id"]
        try:
            index.set_search_params(manifest["search_params"])
        except RuntimeError as exc:
            raise IndexDamagedError(
                f"the manifest {index.manifest_path} has search_params {manifest['search_params']!r} that faiss "
                f"refuses: {str(exc).strip().splitlines()[-1]}"
            ) from exc
        return index

    def _read_native(self, manifest: dict[str, Any], mmap: bool) -> Any:
        """The faiss index of the file, checked against the manifest's checksum when it is read fully."""
        try:
            size = self.index_path.stat().st_size
            mapped = mmap and size >= MMAP_MIN_BYTES
            # A memory-mapped index is not read just to check it (that is what mapping avoids): it is checked
            # by sampling instead (vectors.index_problem).
            recorded = manifest["checksum"]
            if not mapped and recorded is not None and file_checksum(self.index_path) != recorded:
                raise IndexDamagedError(f"{self.index_path} does not match the checksum its manifest recorded")
            # IO_FLAG_MMAP_IFC maps the inverted lists in place (zero copy): scans run as fast as from RAM.
            # Plain IO_FLAG_MMAP converts them to OnDiskInvertedLists, ~1.5x slower per query at 1M.
            flags = getattr(self._faiss, "IO_FLAG_MMAP_IFC", self._faiss.IO_FLAG_MMAP) if mapped else 0
            raw = self._faiss.read_index(str(self.index_path), flags)
        except FileNotFoundError as exc:
            raise IndexDamagedError(f"{self.index_path} is missing (its manifest is there)") from exc
        except (OSError, RuntimeError) as exc:
            reason = getattr(exc, "strerror", None) or (str(exc).strip().splitlines() or ["unreadable"])[-1]
            raise IndexDamagedError(f"{self.index_path} cannot be read ({reason})") from exc
        self._mapped = mapped
        return raw

    def save(self) -> None:
        """Write the index and its manifest (temporaries, fsync, renames); IndexStorageError when that fails,
        with the previous files untouched and no temporary left."""
        check_directory(self.directory)
        index_tmp, manifest_tmp = temporary_path(self.index_path), temporary_path(self.manifest_path)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._faiss.write_index(self._index, str(index_tmp))
            checksum = file_checksum(index_tmp)  # just written: read back from the page cache
            fsync_file(index_tmp)
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
                "catalog_id": self.catalog_id,
                "checksum": checksum,
            }
            write_bytes(manifest_tmp, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
            fsync_file(manifest_tmp)
            os.replace(index_tmp, self.index_path)
            os.replace(manifest_tmp, self.manifest_path)
        except BaseException as exc:
            index_tmp.unlink(missing_ok=True)
            manifest_tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError | RuntimeError):
                raise _save_failed(self.index_path, exc) from exc
            raise

    def verify_vectors(self, ids: np.ndarray, vectors: np.ndarray) -> str | None:
        """Why the index does not hold ``float32[n, dim]`` ``vectors`` under ``int64[n]`` ``ids``, or None.

        Within the index kind's precision: each stored vector (``reconstruct``) must equal what the index
        makes of the catalog's vector (encode + decode; exact for ``Flat``), or be as close to the catalog's
        vector as that (a vector assigned to a neighbouring list). Searching with the vectors must give
        finite scores no higher than 1 plus the codes' error. Reads a few pages, never the whole index.
        """
        if len(ids) == 0:
            return None
        vectors = self._check(vectors)
        stored = np.empty_like(vectors)
        for row, file_id in enumerate(ids.tolist()):
            try:
                stored[row] = self._index.reconstruct(int(file_id))
            except RuntimeError:
                return f"lacks the vector of file id {file_id}"
        if is_flat(self.factory):
            expected = vectors
        else:
            native = self._index
            expected = native.sa_decode(native.sa_encode(vectors))
        with np.errstate(over="ignore", invalid="ignore"):  # garbage may overflow: inf and NaN compare as bad
            code_error = np.linalg.norm(expected - vectors, axis=1)
            same_code = np.linalg.norm(stored - expected, axis=1) <= 1e-4
            as_close = np.linalg.norm(stored - vectors, axis=1) <= 2 * code_error + 1e-3
        bad = np.flatnonzero(~(same_code | as_close))
        if len(bad):
            return f"holds another vector than the catalog for file id {int(ids[bad[0]])}"
        ceiling = 1.0 + 3 * float(code_error.max()) + 1e-2
        for query in vectors[:SCORE_CHECK_QUERIES]:
            top = self._top_score(query)
            if not (np.isfinite(top) and top <= ceiling):
                return f"scores a search {top:.3g} (a cosine is at most 1)"
        return None

    def _top_score(self, query: np.ndarray) -> float:
        """The best score of ``float32[dim]`` ``query``: an exact scan for Flat; for IVF only the nearest list
        (a sanity check, not a search: garbage centroids of huge norm are the nearest to every query)."""
        if is_flat(self.factory):
            scores = self.search(query, 1)[0].scores  # one query runs on the calling thread
        else:
            found, ids = self._index.search(query[None, :], 1, params=self._faiss.SearchParametersIVF(nprobe=1))
            scores = found[0][ids[0] >= 0]  # an empty nearest list finds nothing (id -1)
        return float(scores[0]) if len(scores) else 0.0

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
        if not is_flat(self.factory):
            self._widen(queries, k, scores, ids)
        results = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            keep = row_ids >= 0
            results.append(SearchResult(row_ids[keep].astype(np.int64), row_scores[keep].astype(np.float32)))
        return results

    def search_among(self, queries: np.ndarray, k: int, ids: np.ndarray) -> list[SearchResult]:
        """``VectorIndex.search_among`` through FAISS's id selector: the scan skips every other id, so a filter
        keeping 1% of a flat index costs about what the unfiltered search does. An IVF index probes its usual
        ``nprobe`` lists and may return fewer than ``k`` (callers check)."""
        queries = self._check(np.atleast_2d(queries))
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        k = min(int(k), len(self), len(ids))
        if k <= 0:
            empty = SearchResult(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
            return [empty for _ in range(len(queries))]
        selector = self._faiss.IDSelectorBatch(ids)
        ivf = None if is_flat(self.factory) else self._faiss.extract_index_ivf(self._index)
        params = (self._faiss.SearchParameters(sel=selector) if ivf is None
                  else self._faiss.SearchParametersIVF(sel=selector, nprobe=ivf.nprobe))
        threads = self._faiss.omp_get_max_threads()
        if len(queries) == 1:
            self._faiss.omp_set_num_threads(1)  # as _search: one query runs on the calling thread
        try:
            scores, found = self._index.search(queries, k, params=params)
        finally:
            self._faiss.omp_set_num_threads(threads)
        results = []
        for row_scores, row_ids in zip(scores, found, strict=True):
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

    def _widen(self, queries: np.ndarray, k: int, scores: np.ndarray, ids: np.ndarray) -> None:
        """Complete rows of an IVF search that found fewer than ``k`` ids (``k`` ≤ the vector count), in place.

        The tuned ``nprobe`` lists can hold fewer than ``k`` vectors (``search -k 2000`` over 1852 vectors
        found 504), so those queries probe ``NPROBE_WIDEN`` times more lists, up to all of them, which holds
        every vector. The index's own settings are left alone (other threads may be searching).
        """
        ivf = self._faiss.extract_index_ivf(self._index)
        nprobe = max(int(ivf.nprobe), 1)
        short = np.flatnonzero((ids >= 0).sum(axis=1) < k)
        while len(short) and nprobe < ivf.nlist:
            nprobe = min(ivf.nlist, nprobe * NPROBE_WIDEN)
            params = self._faiss.SearchParametersIVF(nprobe=nprobe)
            if "HNSW" in self.factory:  # the HNSW quantizer must return at least nprobe lists
                params.quantizer_params = self._faiss.SearchParametersHNSW(efSearch=max(2 * nprobe, 64))
            wider_scores, wider_ids = self._index.search(queries[short], k, params=params)
            scores[short], ids[short] = wider_scores, wider_ids
            short = short[(wider_ids >= 0).sum(axis=1) < k]

    def range_search(self, queries: np.ndarray, threshold: float) -> list[RangeResult]:
        """``VectorIndex.range_search`` with faiss' own range search (for IVF: over the lists the tuned
        ``nprobe`` probes, as ``search`` does); an index kind whose faiss class has none is scanned exactly
        instead, over the vectors as the index stores them (``reconstruct``: decoded codes for SQ/PQ)."""
        queries = self._check(np.atleast_2d(queries))
        if len(self) == 0 or len(queries) == 0:
            return empty_range(len(queries))
        out: list[RangeResult] = []
        for start in range(0, len(queries), RANGE_CHUNK):
            block = queries[start:start + RANGE_CHUNK]
            try:
                lims, scores, ids = self._index.range_search(block, float(threshold))
            except RuntimeError:  # "range search not implemented" for this kind (checked on the first block)
                if start:
                    raise
                return exact_range_search(queries, self._stored_blocks(), threshold)
            out += [best_first(ids[lims[r]:lims[r + 1]], scores[lims[r]:lims[r + 1]]) for r in range(len(block))]
        return out

    def _stored_blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(ids int64[b], float32[b, dim])`` blocks of every stored vector, as the index decodes them."""
        ids = self.ids()
        for start in range(0, len(ids), RANGE_BLOCK):
            block = ids[start:start + RANGE_BLOCK]
            yield block, self._index.reconstruct_batch(block)

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
