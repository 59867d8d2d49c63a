"""Library: a directory holding a catalog and its derived vector indexes — the library's Python API.

    lib = glimpse.open_library("~/.local/share/glimpse", model="openai/clip-vit-base-patch32")
    lib.index(["~/Pictures"])
    for hit in lib.search("a dog on the beach", k=10):
        print(hit.score, hit.path)
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glimpse.catalog import CATALOG_FILENAME, STATE_OK, Catalog
from glimpse.errors import (
    GlimpseError,
    ImageError,
    LibraryBusyError,
    LibraryNotFoundError,
    ModelError,
    ModelNotFoundError,
    ReadOnlyLibraryError,
    UserInputError,
)
from glimpse.images import DEFAULT_MAX_MEGAPIXELS, check_max_megapixels, open_image
from glimpse.notices import notice

if TYPE_CHECKING:
    from glimpse.encoders.base import Encoder
    from glimpse.pipeline import IndexReport, Progress
    from glimpse.spec import ModelSpec
    from glimpse.vectors.base import VectorIndex

LIBRARY_ENV = "GLIMPSE_LIBRARY"
INDEX_DIRNAME = "index"
LOCK_FILENAME = "indexing.lock"


class EmptyLibraryError(GlimpseError):
    """The library holds no vectors of the model in use."""


def default_library_dir() -> Path:
    """``$GLIMPSE_LIBRARY``, else ``$XDG_DATA_HOME/glimpse``, else ``~/.local/share/glimpse``."""
    if os.environ.get(LIBRARY_ENV):
        return Path(os.environ[LIBRARY_ENV]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "glimpse"


@dataclass(frozen=True)
class Hit:
    """One search result. ``score`` is the cosine similarity (float, higher is better)."""

    id: int
    path: str
    score: float
    width: int | None = None
    height: int | None = None
    tags: tuple[tuple[str, float], ...] = ()  # (tag, score) from the catalog, best first

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = os.fsencode(self.path).decode("utf-8", "replace")
        data["score"] = round(float(self.score), 6)
        data["tags"] = [{"tag": tag, "score": round(float(score), 6)} for tag, score in self.tags]
        return data


@dataclass
class LibraryStatus:
    library: str
    model: str
    model_key: str | None
    roots: list[str]
    images: int
    errors: int
    skipped: int
    vectors: int
    index_kind: str
    index_vectors: int
    models: list[dict[str, Any]]
    recent_errors: list[dict[str, str]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def folder_prefixes(folder: str | os.PathLike[str] | None) -> tuple[str, ...]:
    """The directories a folder filter keeps images inside: ``folder`` made absolute, and resolved.

    Roots are stored resolved but the paths below them as walked (through directory symlinks), so a
    folder given through a symlink, or one reached through a symlink inside a root, matches either way.
    Each is a directory: "/a/b" keeps "/a/b/x.jpg", not "/a/bc/x.jpg". Empty for no folder.
    """
    if folder is None or os.fspath(folder) in ("", b""):
        return ()
    expanded = os.path.expanduser(os.fsdecode(os.fspath(folder)))
    return tuple(dict.fromkeys((os.path.abspath(expanded), os.path.realpath(expanded))))


def _inside(path: str, directory: str) -> bool:
    """``path`` is ``directory`` or lies inside it (by path components, not string prefix)."""
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def library_model(directory: str | os.PathLike[str] | None = None) -> str:
    """The model a library was built with (its catalog's ``default_model``), else the default model.

    For commands that use a library's model but not the library (``glimpse tag``, ``bench``): the catalog is
    only read, and nothing is created where there is no library.
    """
    from glimpse.registry import DEFAULT_MODEL

    path = (Path(directory).expanduser() if directory is not None else default_library_dir()) / CATALOG_FILENAME
    if not path.is_file():
        return DEFAULT_MODEL
    try:
        catalog = Catalog(path, readonly=True)
    except GlimpseError:
        return DEFAULT_MODEL  # an unreadable catalog: the command that opens the library will say why
    try:
        return catalog.get_meta("default_model") or DEFAULT_MODEL
    finally:
        catalog.close()


def _resolve_model_name(model: str) -> str:
    """Local model directories are remembered by absolute path; names stay names."""
    expanded = os.path.expanduser(model)
    return os.path.abspath(expanded) if os.path.isdir(expanded) else model


class Library:
    """An image library: catalog + vector indexes under one directory, bound to one model."""

    def __init__(self, directory: str | os.PathLike[str] | None = None, model: str | None = None,
                 *, device: str = "cpu", store: str | None = None, create: bool = True) -> None:
        from glimpse.registry import DEFAULT_MODEL

        self.directory = Path(directory).expanduser() if directory is not None else default_library_dir()
        catalog_path = self.directory / CATALOG_FILENAME
        if not catalog_path.is_file():
            if not create:
                raise LibraryNotFoundError(
                    f"no library at {self.directory} (no {CATALOG_FILENAME} there); check --library or "
                    "GLIMPSE_LIBRARY, or create one with `glimpse index PATH`"
                )
            if self.directory.exists() and not self.directory.is_dir():
                raise UserInputError(f"the library path {self.directory} is a file; give a folder for the library")
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UserInputError(
                    f"cannot create the library folder {self.directory}: {(exc.strerror or str(exc)).lower()}; "
                    "give another --library"
                ) from exc
        #: False on a read-only folder or file system: searching works, writing commands say why they cannot
        self.writable = os.access(self.directory, os.W_OK) and (
            not catalog_path.exists() or os.access(catalog_path, os.W_OK)
        )
        self.catalog = Catalog(catalog_path, readonly=not self.writable)
        stored = self.catalog.get_meta("default_model")
        self.model_name = _resolve_model_name(model) if model else (stored or DEFAULT_MODEL)
        self.device = device
        #: vector store: None = embedded FAISS; a milvus:// / http:// URI or a *.db milvus-lite file
        self.store = store
        self._index: VectorIndex | None = None
        self._model_missing: ModelError | None = None  # set when only the catalog's copy of the spec is known
        self._coverage_checked_at: int | None = None

    # -- model ---------------------------------------------------------------------------------------
    @cached_property
    def spec(self) -> ModelSpec:
        """The model's spec; when its files are gone but the library has used it, the spec stored in the
        catalog (so commands that need only stored vectors still work; encoding then says what is missing)."""
        from glimpse.keymigration import adopt_legacy_key
        from glimpse.registry import load_spec

        try:
            spec = load_spec(self.model_name)
        except ModelError as exc:
            stored = self._stored_spec()
            if stored is None:
                raise
            self._model_missing = exc
            return stored
        # Vectors stored under the key older glimpse versions gave these weights are renamed, not re-encoded.
        spec = adopt_legacy_key(self.catalog, spec, self.directory, self.directory / INDEX_DIRNAME)
        return self._known_key(spec)

    def _known_key(self, spec: ModelSpec) -> ModelSpec:
        """``spec`` under the key this library already files the same weights under, if any.

        A key is ``<name slug>-<weights hash>``; the name is a folder name for local models, so renaming or
        moving the folder changes the slug, not the weights: their vectors stay valid and are kept.
        """
        known = self.catalog.model_specs()
        if spec.key in known or "-" not in spec.key:
            return spec
        weights = spec.key.rsplit("-", 1)[1]
        for key, data in known.items():
            if key.rsplit("-", 1)[-1] == weights and data.get("dim") == spec.dim and data.get("family") == spec.family:
                return replace(spec, key=key)
        return spec

    def _stored_spec(self) -> ModelSpec | None:
        from glimpse.spec import ModelSpec

        for data in self.catalog.model_specs().values():
            if self.model_name in (data.get("source"), data.get("name"), data.get("extra", {}).get("repo_id")):
                return ModelSpec.from_dict(data)
        return None

    @cached_property
    def encoder(self) -> Encoder:
        from glimpse.registry import load_encoder

        spec = self.spec
        if self._model_missing is not None:
            raise ModelNotFoundError(
                f"this needs the library's model {spec.name}, which is no longer where it was ({spec.source}): "
                f"{self._model_missing}; put it back, or pass --model with its new location"
            )
        return load_encoder(spec, device=self.device)

    # -- indexing ------------------------------------------------------------------------------------
    @contextmanager
    def _writer_lock(self) -> Iterator[None]:
        """One indexing process per library; the OS releases the lock if the process dies."""
        if not self.writable:
            raise ReadOnlyLibraryError(
                f"the library {self.directory} is read-only here: searching works, but indexing, tagging and "
                "removing need write access to it"
            )
        path = self.directory / LOCK_FILENAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ReadOnlyLibraryError(
                f"cannot write the lock file {path}: {(exc.strerror or str(exc)).lower()}; indexing, tagging and "
                "removing need write access to the library folder"
            ) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise LibraryBusyError(
                    f"another glimpse process is indexing the library {self.directory}; wait for it to finish"
                ) from exc
            yield
        finally:
            os.close(fd)

    def index(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        batch_size: int = 32,
        workers: int | None = None,
        max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
        progress: Progress | None = None,
        memory_budget: int | None = None,
    ) -> IndexReport:
        """Incrementally index files and folders; returns the run's report.

        ``memory_budget`` (bytes): the FAISS index kind is chosen to fit it (``vectors.select``).
        """
        from glimpse.pipeline import Indexer

        check_max_megapixels(max_megapixels)  # a bad limit fails now, not once per file
        roots = []
        for raw in paths:
            path = os.path.realpath(os.path.expanduser(os.fspath(raw)))
            if not os.path.exists(path):
                raise UserInputError(f"{raw} does not exist; give a folder or image file to index")
            roots.append(path)
        if not roots:
            raise UserInputError("nothing to index: give at least one folder or image file")
        with self._writer_lock():
            spec = self.spec
            self.catalog.register_model(spec.key, spec.name, spec.dim, spec.to_dict())
            if self.catalog.get_meta("default_model") is None:
                self.catalog.set_meta("default_model", self.model_name)
            new_roots = [root for root in roots if root not in set(self.catalog.roots())]
            for root in roots:
                self.catalog.add_root(root)
            if memory_budget is not None:
                from glimpse.vectors.select import update_policy

                update_policy(self.catalog, spec.key, memory_budget=memory_budget)
            indexer = Indexer(self.catalog, self.encoder, batch_size=batch_size, workers=workers,
                              max_megapixels=max_megapixels, progress=progress)
            report = indexer.run(roots)
            for root in new_roots:
                if not self.catalog.holds_images(root):  # an empty folder or a non-image is no root
                    self.catalog.remove_root(root)
                    shown = os.fsencode(root).decode("utf-8", "replace")
                    notice(f"no images found under {shown}; it was not added to the library"
                           if os.path.isdir(root) else f"{shown} is not an image; it was not added to the library")
            self._vector_index(save=True)
            self._clean_temporary_files()
        return report

    # -- vectors -------------------------------------------------------------------------------------
    def _clean_temporary_files(self) -> None:
        """Remove half-written index files of killed runs (only the lock holder saves, so none is live)."""
        for leftover in (self.directory / INDEX_DIRNAME).glob("*.tmp"):
            leftover.unlink(missing_ok=True)

    def save_vector_index(self) -> None:
        """Catch the vector store up with the catalog and save it (takes the writer lock).

        For after catalog-only changes such as tagging: a store that keeps tags (Milvus) then holds them,
        and later searches do not each replay the same changes.
        """
        with self._writer_lock():
            self._vector_index(save=True)

    def _vector_index(self, *, save: bool) -> VectorIndex:
        """The current model's index, caught up with the catalog.

        Only writers (holding the indexing lock) save it; readers catch up in memory, so a search never
        races an indexing run for the files.
        """
        from glimpse.vectors import open_store, sync_index

        if self._index is None:
            self._index = open_store(self.store, self.directory / INDEX_DIRNAME, self.catalog, self.spec.key,
                                     self.spec.dim, save=save, text_queries=self._text_probes)
        elif sync_index(self._index, self.catalog) and save:
            self._index.save()
        return self._index

    def _text_probes(self) -> np.ndarray:
        """Embedded generic text prompts ``float32[q, d]`` an IVF index tunes ``nprobe`` for (cached)."""
        from glimpse.vectors.text_probes import text_probe_vectors

        return text_probe_vectors(self.encoder, self.directory / INDEX_DIRNAME)

    def rebuild_index(self, *, kind: str | None = None, recall_target: float | None = None) -> int:
        """Rebuild the vector index of the current model from the catalog; returns its size.

        ``kind``: a FAISS factory string (``"IVF4096,PQ64"``) or ``"auto"``; ``recall_target``: the
        recall@10 the search parameters are tuned to. Both are remembered for later rebuilds.
        """
        from glimpse.vectors import rebuild_store

        with self._writer_lock():
            self._index = rebuild_store(self.store, self.directory / INDEX_DIRNAME, self.catalog, self.spec.key,
                                        self.spec.dim, kind=kind, recall_target=recall_target,
                                        text_queries=self._text_probes)
        return len(self._index)

    # -- queries -------------------------------------------------------------------------------------
    def _id_filter(self, tags: Sequence[str], no_tags: Sequence[str], prefixes: Sequence[str]) -> Any:
        """A predicate on file ids: inside one of ``prefixes`` (if any), carrying every tag of ``tags`` and
        none of ``no_tags``; None when nothing is filtered."""
        if not tags and not no_tags and not prefixes:
            return None
        required = self.catalog.ids_with_tags(list(tags)) if tags else None
        if prefixes:  # id range scans of the path index: no paths are loaded
            inside = set().union(*(self.catalog.ids_under(p) for p in prefixes))
            required = inside if required is None else required & inside
        banned = self.catalog.ids_with_any_tag(list(no_tags)) if no_tags else set()
        return lambda i: (required is None or i in required) and i not in banned

    def _search_vector(self, vector: np.ndarray, k: int, min_score: float | None, *,
                       tags: Sequence[str] | None = None, no_tags: Sequence[str] | None = None,
                       folder: str | os.PathLike[str] | None = None) -> list[Hit]:
        """Best-first hits of ``float32[d]`` ``vector``; filters go to the store where it can apply them."""
        if k < 1:
            raise UserInputError(f"k must be at least 1, got {k}")
        index = self._vector_index(save=False)
        if len(index) == 0:
            raise EmptyLibraryError(
                f"the library {self.directory} has no images indexed with {self.spec.name}; "
                f"run `glimpse --model {self.spec.name} index PATH` first"
            )
        self._note_coverage()
        tags, no_tags, prefixes = list(tags or ()), list(no_tags or ()), folder_prefixes(folder)
        self._check_filters(tags + no_tags, prefixes, folder)
        found: list[tuple[int, float]] | None = None
        if tags or no_tags or prefixes:
            pushed = index.search_filtered(vector[None, :], k, path_prefixes=prefixes, tags=tags, no_tags=no_tags)
            if pushed is not None:
                found = list(zip(pushed[0].ids.tolist(), pushed[0].scores.tolist(), strict=True))
        if found is None:
            keep = self._id_filter(tags, no_tags, prefixes)
            fetch = k
            while True:  # with a filter, widen the search until k hits pass it (or the index is exhausted)
                result = index.search(vector[None, :], fetch)[0]
                found = [(i, s) for i, s in zip(result.ids.tolist(), result.scores.tolist(), strict=True)
                         if keep is None or keep(i)]
                if keep is None or len(found) >= k or fetch >= len(index):
                    break
                fetch = min(len(index), fetch * 4)
        found = found[:k]
        records = self.catalog.files_by_id([i for i, _ in found])
        tag_map = self.catalog.tags_of([i for i, _ in found])
        hits = []
        for file_id, score in found:
            rec = records.get(file_id)
            if rec is None or (min_score is not None and score < min_score):
                continue
            hits.append(Hit(file_id, rec.path, float(score), rec.width, rec.height, tuple(tag_map.get(file_id, ()))))
        return hits

    def _check_filters(self, tag_names: Sequence[str], prefixes: Sequence[str],
                       folder: str | os.PathLike[str] | None) -> None:
        """Filters that can match nothing are refused with the reason, not answered with "no results"."""
        if prefixes:
            roots = self.catalog.roots()
            if not any(_inside(p, r) or _inside(r, p) for p in prefixes for r in roots):
                listed = ", ".join(os.fsencode(r).decode("utf-8", "replace") for r in roots) or "none"
                raise UserInputError(
                    f"--folder {os.fsdecode(os.fspath(folder or ''))} is not an indexed folder or inside one "
                    f"(indexed roots: {listed}); index it first, or give a folder inside a root"
                )
        unknown = self.catalog.unknown_tags(tag_names)
        if unknown:
            import difflib

            known = [t for t, _ in self.catalog.tag_counts()]
            if not known:
                raise UserInputError(
                    f"no image in this library has tags yet (asked for {', '.join(map(repr, unknown))}); run "
                    "`glimpse tag` or `glimpse index --tags` first"
                )
            hints = []
            for tag in unknown:
                close = difflib.get_close_matches(tag, known, n=3)
                hints.append(f"{tag!r}" + (f" (did you mean {', '.join(map(repr, close))}?)" if close else ""))
            raise UserInputError(
                f"no image carries the tag {'; '.join(hints)}; `glimpse tags` lists the tags in use"
            )

    def _note_coverage(self) -> None:
        """Say so when the model in use has vectors of only part of the library (once per catalog change)."""
        last = self.catalog.last_change()
        if self._coverage_checked_at == last:
            return
        self._coverage_checked_at = last
        covered, images = self.catalog.count_embeddings(self.spec.key), self.catalog.counts()[STATE_OK]
        if 0 < covered < images:
            notice(
                f"{self.spec.name} has vectors of {covered} of the {images} images in this library; run "
                f"`glimpse --model {self.model_name} index` on its folders to search the rest"
            )

    def _require_content(self) -> None:
        # Checked before the model is loaded: an empty library should not trigger a model download.
        if not self.catalog.models():
            raise EmptyLibraryError(
                f"the library {self.directory} is empty; run `glimpse index PATH` first"
            )

    def query_vector(self, query: str, images: Sequence[str | os.PathLike[str]] | None = None) -> np.ndarray:
        """The L2-normalised ``float32[d]`` vector of a query string (with optional image terms)."""
        from glimpse.query import embed_terms, parse_query

        return embed_terms(parse_query(query, list(images or [])), self.encoder)

    def search(self, query: str, k: int = 10, *, images: Sequence[str | os.PathLike[str]] | None = None,
               min_score: float | None = None, tags: Sequence[str] | None = None,
               no_tags: Sequence[str] | None = None, folder: str | os.PathLike[str] | None = None) -> list[Hit]:
        """Best-first hits for a text query (``+``/``-`` terms, ``w:term`` weights, image terms).

        ``tags``: hits must carry all of these tags; ``no_tags``: hits must carry none of them (tags compare
        ASCII case-insensitively); ``folder``: hits must lie inside this folder (see ``folder_prefixes``).
        Up to ``k`` hits pass the filters: a store that can filter (Milvus) does it inside its search,
        otherwise the search widens until ``k`` hits pass or the index is exhausted.
        """
        from glimpse.query import embed_terms, parse_query

        terms = parse_query(query, list(images or []))  # a malformed query fails before any model work
        self._require_content()
        return self._search_vector(embed_terms(terms, self.encoder), k, min_score, tags=tags, no_tags=no_tags,
                                   folder=folder)

    def search_vector(self, vector: np.ndarray, k: int = 10, *, min_score: float | None = None,
                      tags: Sequence[str] | None = None, no_tags: Sequence[str] | None = None,
                      folder: str | os.PathLike[str] | None = None) -> list[Hit]:
        """Best-first hits for an L2-normalised ``float32[d]`` query vector (e.g. built by the server).

        Filters as in ``search``.
        """
        self._require_content()
        return self._search_vector(np.asarray(vector, dtype=np.float32), k, min_score, tags=tags, no_tags=no_tags,
                                   folder=folder)

    def image_vector(self, image: str | os.PathLike[str] | int) -> np.ndarray:
        """The stored vector of an indexed image (by id or path), else the image freshly encoded."""
        if isinstance(image, int):
            ids, vectors = self.catalog.embeddings(self.spec.key, [image])
            if not len(ids):
                raise UserInputError(f"no image with id {image} is indexed with {self.spec.name}")
            return vectors[0]
        path = os.path.realpath(os.path.expanduser(os.fspath(image)))
        rec = self.catalog.file_by_path(path)
        if rec is not None and rec.state == STATE_OK:
            ids, vectors = self.catalog.embeddings(self.spec.key, [rec.id])
            if len(ids):
                return vectors[0]
        if not os.path.isfile(path):
            raise UserInputError(f"{image} is not a file; give an image path or an indexed image id")
        try:
            decoded = open_image(path, min_side=self.spec.preprocess.min_side)
        except ImageError as exc:
            raise type(exc)(f"{image}: {exc}") from exc  # the reason alone does not say which file
        return self.encoder.encode_images([decoded.image])[0]

    def similar(self, image: str | os.PathLike[str] | int, k: int = 10, *, min_score: float | None = None,
                tags: Sequence[str] | None = None, no_tags: Sequence[str] | None = None,
                folder: str | os.PathLike[str] | None = None) -> list[Hit]:
        """Images most like ``image`` (a path or an indexed id), best first; an indexed image finds itself
        (when it passes the filters, which are those of ``search``)."""
        self._require_content()
        return self._search_vector(self.image_vector(image), k, min_score, tags=tags, no_tags=no_tags, folder=folder)

    # -- maintenance ---------------------------------------------------------------------------------
    def remove(self, paths: Sequence[str | os.PathLike[str]]) -> int:
        """Forget files and folders (the files on disk are untouched); returns how many were forgotten."""
        removed = 0
        with self._writer_lock():
            for raw in paths:
                path = os.path.realpath(os.path.expanduser(os.fspath(raw)))
                count = self.catalog.delete_under(path)
                dropped_root = self.catalog.remove_root(path)
                if count == 0 and not dropped_root:
                    raise UserInputError(f"{raw} is not in the library; `glimpse status` lists its roots")
                removed += count
            if self.catalog.count_embeddings(self.spec.key) or self._index is not None:
                self._vector_index(save=True)
        return removed

    def status(self) -> LibraryStatus:
        counts = self.catalog.counts()
        models = self.catalog.models()
        key = None
        index_vectors = 0
        index_kind = "faiss IDMap2,Flat (inner product)"
        try:
            key = self.spec.key
            from glimpse.vectors import describe_store

            index_kind, index_vectors = describe_store(self.store, self.directory / INDEX_DIRNAME, self.catalog,
                                                       key, self.spec.dim)
        except GlimpseError:
            pass  # status must work even when the model cannot be loaded here
        vectors = next((m["embeddings"] for m in models if m["key"] == key), 0)
        return LibraryStatus(
            library=str(self.directory),
            model=self.model_name,
            model_key=key,
            roots=[os.fsencode(r).decode("utf-8", "replace") for r in self.catalog.roots()],
            images=counts[STATE_OK],
            errors=counts["error"],
            skipped=counts["skipped"],
            vectors=vectors,
            index_kind=index_kind,
            index_vectors=index_vectors,
            models=models,
            recent_errors=[{"path": r.display_path, "reason": r.error or ""} for r in self.catalog.errors(limit=20)],
        )

    def close(self) -> None:
        if "encoder" in self.__dict__:
            self.encoder.close()
        if hasattr(self._index, "close"):  # a Milvus store holds a client connection
            self._index.close()
        self.catalog.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_library(path: str | os.PathLike[str] | None = None, model: str | None = None, *,
                 device: str = "cpu", store: str | None = None, create: bool = True) -> Library:
    """Open (creating if needed) the library at ``path`` bound to ``model`` (name or model directory).

    ``store``: the vector store — None for the embedded FAISS index, a ``milvus://`` URI or a milvus-lite
    ``.db`` file for Milvus. ``create=False``: a folder without a library raises ``LibraryNotFoundError``
    instead of becoming an empty library (for commands that only read).
    """
    return Library(path, model, device=device, store=store, create=create)
