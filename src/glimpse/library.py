"""Library: a directory holding a catalog and its derived vector indexes — the library's Python API.

    lib = glimpse.open_library("~/.local/share/glimpse", model="openai/clip-vit-base-patch32")
    lib.index(["~/Pictures"])
    for hit in lib.search("a dog on the beach", k=10):
        print(hit.score, hit.path)

With OCR (``lib.index(paths, ocr=True)``) the text in the images is stored and searched too:
``lib.search('text:"exit"')`` (full-text only), ``lib.search("receipt", text="total")`` (CLIP ranking
filtered by text), and a plain query fuses both rankings (``glimpse.ocr.text_index`` has the rules).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glimpse.catalog import CATALOG_FILENAME, STATE_OK, Catalog, FileRecord, ItemRecord, TextMatch, is_video_format
from glimpse.errors import (
    GlimpseError,
    ImageError,
    LibraryNotFoundError,
    ModelError,
    ModelNotFoundError,
    ReadOnlyLibraryError,
    UserInputError,
)
from glimpse.images import DEFAULT_MAX_MEGAPIXELS, check_max_megapixels, open_image, open_regular_file
from glimpse.items import (
    DEFAULT_PER_VIDEO,
    KIND_PHOTO,
    KIND_VIDEO,
    check_kind,
    check_per_video,
    group_items,
    kind_of,
)
from glimpse.metafilter import SORT_DATE, SORT_SCORE, MetadataCheck, MetadataFilter, check_sort
from glimpse.notices import notice
from glimpse.ocr.text_index import (
    DEFAULT_TEXT_WEIGHT,
    MATCH_BOTH,
    MATCH_CLIP,
    MATCH_OCR,
    TextQuery,
    check_text_weight,
    fuse,
    merge,
    plain_query_terms,
    split_text_terms,
    text_terms,
)
from glimpse.settings import LibrarySettings, default_library_dir

if TYPE_CHECKING:
    from glimpse.encoders.base import Encoder
    from glimpse.ocr.base import OcrEngine, OcrLine
    from glimpse.pipeline import IndexReport, Progress
    from glimpse.spec import ModelSpec
    from glimpse.vectors.base import VectorIndex
    from glimpse.video import SamplingRules

INDEX_DIRNAME = "index"
LOCK_FILENAME = "indexing.lock"
# A fused (CLIP + text) search ranks this many of each side at least: RRF needs ranks beyond the page shown.
FUSION_DEPTH = 100
# A text filter matching at most this many images is answered by exact scores of their stored vectors (any
# store); a wider one widens the store's search until enough of its hits pass, as tag filters do.
EXACT_FILTER_LIMIT = 20000
# A metadata filter keeping more than this share of the library is checked on the store's candidates (the search
# widens until k pass) instead of becoming an id set to search among.
BROAD_FILTER_SHARE = 0.05


class EmptyLibraryError(GlimpseError):
    """The library holds no vectors of the model in use."""


@dataclass(frozen=True)
class Hit:
    """One search result. ``score``: the cosine similarity (float, higher is better); for a full-text search
    (``text:"…"`` alone) the text match score in (0, 1] (``text_index.line_score``).

    ``match``: why it was found — ``"clip"`` (image similarity), ``"ocr"`` (its text matched; in a fused
    search, CLIP did not rank it among the first), ``"both"``. ``snippet``: the best-matching line of its
    text, as recognised (None when the text played no part). Fused hits are ordered by ``rank_score`` (the
    reciprocal-rank fusion value), so their ``score`` need not fall from one hit to the next.
    """

    id: int
    path: str
    score: float
    width: int | None = None
    height: int | None = None
    tags: tuple[tuple[str, float], ...] = ()  # (tag, score) from the catalog, best first
    match: str = MATCH_CLIP
    snippet: str | None = None
    rank_score: float | None = None  # the fusion score of a fused search, else None
    meta: dict[str, Any] | None = None  # capture metadata (``PhotoMetadata.to_dict``): taken, camera, place …
    # A video: ``time`` is the best frame's, in seconds from the start; ``frames`` its best frames found, best
    # first, as (seconds, score, item id) — the item id names the frame (its thumbnail, its vector).
    time: float | None = None
    frames: tuple[tuple[float, float, int], ...] = ()

    @property
    def kind(self) -> str:
        """``"photo"`` or ``"video"``."""
        return KIND_PHOTO if self.time is None else KIND_VIDEO

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = os.fsencode(self.path).decode("utf-8", "replace")
        data["score"] = round(float(self.score), 6)
        data["kind"] = self.kind
        data["tags"] = [{"tag": tag, "score": round(float(score), 6)} for tag, score in self.tags]
        data["frames"] = [{"time": round(t, 3), "score": round(float(sc), 6), "id": i} for t, sc, i in self.frames]
        if self.time is not None:
            data["time"] = round(self.time, 3)
        if self.rank_score is not None:
            data["rank_score"] = round(float(self.rank_score), 6)
        return data


@dataclass
class ImageVectors:
    """``vectors[i]`` (L2-normalised ``float32[d]``) belongs to ``paths[i]``; ``ids[i]`` is its catalog id, or
    ``None`` when the file is not in the library; ``stored_from[i]`` is the id whose stored vector row ``i``
    is (``ids[i]`` for an unchanged file, another file's id for a copy of it, ``None`` when freshly encoded).
    ``stored``/``encoded`` count where the vectors came from; ``errors`` holds ``{"path", "reason"}`` of the
    files that could not be read (they have no row)."""

    paths: list[str]
    vectors: np.ndarray
    ids: list[int | None]
    stored_from: list[int | None] = field(default_factory=list)
    stored: int = 0
    encoded: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"images": len(self.paths), "stored": self.stored, "encoded": self.encoded, "failed": len(self.errors)}


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
    ocr: dict[str, int] = field(default_factory=dict)  # {"images": read by OCR, "with_text", "lines", "failed"}
    videos: dict[str, int] = field(default_factory=dict)  # {"videos": indexed videos, "frames": their items}

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


@dataclass(frozen=True)
class _Ranking:
    """What a search page wants of ranked items: ``offset .. offset+k`` files passing ``min_score``, ``accept`` (on
    paths) and ``kind``, each video with up to ``per_video`` frames."""

    k: int
    offset: int
    min_score: float | None
    accept: Callable[[str], bool] | None
    kind: str | None
    per_video: int

    @property
    def want(self) -> int:
        return self.offset + self.k

    def groups(self, catalog: Catalog, found: list[tuple[int, float]], keep: Callable[[int], bool] | None
               ) -> list[list[tuple[ItemRecord, float]]]:
        """``found`` (item id, score), best first → the files passing everything, grouped (``group_items``);
        ``keep`` judges file ids."""
        items = catalog.items_by_id([i for i, _ in found])
        passed = []
        for i, score in found:
            item = items.get(i)
            if item is None or (self.min_score is not None and score < self.min_score):
                continue
            if (self.kind is not None and kind_of(item) != self.kind) or (keep is not None and not keep(item.file.id)):
                continue
            if self.accept is None or self.accept(item.file.path):
                passed.append((item, score))
        return group_items(passed, self.per_video)

    def page(self, groups: list[list[tuple[ItemRecord, float]]]) -> list[list[tuple[ItemRecord, float]]]:
        return groups[self.offset:self.want]


class Library:
    """An image library: catalog + vector indexes under one directory, bound to one model."""

    def __init__(self, directory: str | os.PathLike[str] | None = None, model: str | None = None,
                 *, device: str = "cpu", store: str | None = None, create: bool = True,
                 encoder: Encoder | None = None, ocr_engine: OcrEngine | None = None) -> None:
        """``encoder``: an already-loaded encoder to use (its spec is the library's model); it is borrowed,
        so ``close()`` leaves it open for its owner. ``ocr_engine``: a loaded OCR engine to use whenever no
        OCR model is named (borrowed the same way)."""
        from glimpse.registry import DEFAULT_MODEL
        from glimpse.vectors.stores import check_store

        store = check_store(store)  # a mistyped store URI fails before anything is created

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
        #: seconds a writing call waits for another writer (a watcher catching up) before LibraryBusyError
        self.lock_wait = 0.0
        self._borrowed_encoder = encoder is not None
        if encoder is not None:
            self.__dict__["encoder"] = encoder  # the cached properties' slots: no second model load
            self.__dict__["spec"] = encoder.spec
        self._index: VectorIndex | None = None
        self._ocr_engines: dict[tuple[str | None, int | None], OcrEngine] = {}
        self._borrowed_ocr = ocr_engine
        self._model_missing: ModelError | None = None  # set when only the catalog's copy of the spec is known
        self._coverage_checked_at: int | None = None

    @classmethod
    def from_settings(cls, settings: LibrarySettings, *, create: bool = True, encoder: Encoder | None = None
                      ) -> Library:
        """The library ``settings`` name (the CLI's and the server's global options alike); ``create=False``:
        a missing one raises LibraryNotFoundError; ``encoder``: a loaded encoder to borrow (see ``__init__``)."""
        return cls(settings.library, settings.model, device=settings.device, store=settings.store, create=create,
                   encoder=encoder)

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
        """One writing process per library (``glimpse.locking``); the OS releases the lock if the process dies."""
        if not self.writable:
            raise ReadOnlyLibraryError(
                f"the library {self.directory} is read-only here: searching works, but indexing, tagging and "
                "removing need write access to it"
            )
        from glimpse.locking import writer_lock  # filelock: only writers pay its import

        with writer_lock(self.directory / LOCK_FILENAME, library=self.directory, wait=self.lock_wait):
            yield

    @contextmanager
    def writing(self, *, registers_model: bool = False) -> Iterator[Catalog]:
        """The writer's context: holds the library's indexing lock while the body changes the catalog.

        ``registers_model``: the model in use is recorded in the catalog first (the default model of a new
        library too), for bodies that add its vectors. On a clean exit the vector store is caught up with
        the catalog and saved, and half-written index files of killed runs are removed. Raises
        LibraryBusyError while another process writes, ReadOnlyLibraryError where the library is read-only.
        """
        with self._writer_lock():
            if registers_model:
                spec = self.spec
                self.catalog.register_model(spec.key, spec.name, spec.dim, spec.to_dict())
                if self.catalog.get_meta("default_model") is None:
                    self.catalog.set_meta("default_model", self.model_name)
            yield self.catalog
            if registers_model or self._index is not None or self.catalog.count_embeddings(self.spec.key):
                self._vector_index(save=True)
            self._clean_temporary_files()

    def index(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        batch_size: int = 32,
        workers: int | None = None,
        max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
        progress: Progress | None = None,
        memory_budget: int | None = None,
        ocr: bool = False,
        ocr_model: str | None = None,
        video_rules: SamplingRules | None = None,
    ) -> IndexReport:
        """Incrementally index files and folders; returns the run's report.

        ``memory_budget`` (bytes): the FAISS index kind is chosen to fit it (``vectors.select``). ``ocr``:
        also read the text of every image whose current content the OCR model (``ocr_model``, default: the
        engine's default model; naming one implies ``ocr``) has not read, in the decode workers, from the
        image decoded for CLIP;
        unchanged images that only lack text are read without being encoded again. The text of each batch
        is written in the batch's transaction. Videos are sampled by ``video_rules`` (``glimpse.video``; default
        ``SamplingRules()``): each sampled frame becomes an item with its own vector, found by ``search``.
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
        # Loaded first: a missing OCR package or model fails before anything is written. One intra-op thread
        # per session: the decode workers read one image per core (see glimpse.pipeline).
        engine = self.ocr_engine(ocr_model, threads=1) if ocr or ocr_model is not None else None
        with self.writing(registers_model=True):
            spec = self.spec
            new_roots = [root for root in roots if root not in set(self.catalog.roots())]
            for root in roots:
                self.catalog.add_root(root)
            if memory_budget is not None:
                from glimpse.vectors.select import update_policy

                update_policy(self.catalog, spec.key, memory_budget=memory_budget)
            indexer = Indexer(self.catalog, self.encoder, batch_size=batch_size, workers=workers,
                              max_megapixels=max_megapixels, progress=progress, ocr=engine, video_rules=video_rules)
            report = indexer.run(roots)
            from glimpse.metadata_index import fill_metadata

            # Capture time, place, camera: the decoded images brought theirs; this reads the rest (RAWs, videos,
            # files indexed before metadata existed or left without it by a killed run).
            report.metadata_read += fill_metadata(self.catalog, workers=workers)
            for root in new_roots:
                if not self.catalog.holds_images(root):  # an empty folder or a non-image is no root
                    self.catalog.remove_root(root)
                    shown = os.fsencode(root).decode("utf-8", "replace")
                    notice(f"no images found under {shown}; it was not added to the library"
                           if os.path.isdir(root) else f"{shown} is not an image; it was not added to the library")
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
        with self.writing():
            pass

    def _vector_index(self, *, save: bool) -> VectorIndex:
        """The current model's index, caught up with the catalog.

        Only writers (holding the indexing lock) save it; readers catch up in memory, so a search never
        races an indexing run for the files.
        """
        from glimpse.vectors.sync import open_store, sync_index

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
        from glimpse.vectors.sync import rebuild_store

        with self._writer_lock():
            self._index = rebuild_store(self.store, self.directory / INDEX_DIRNAME, self.catalog, self.spec.key,
                                        self.spec.dim, kind=kind, recall_target=recall_target,
                                        text_queries=self._text_probes)
        return len(self._index)

    # -- queries -------------------------------------------------------------------------------------
    def _id_filter(self, tags: Sequence[str], no_tags: Sequence[str], prefixes: Sequence[str],
                   where: MetadataFilter | None = None) -> Any:
        """A predicate on file ids: inside one of ``prefixes`` (if any), carrying every tag of ``tags`` and
        none of ``no_tags``, with capture metadata passing ``where``; None when nothing is filtered."""
        active = where is not None and where.active
        if not tags and not no_tags and not prefixes and not active:
            return None
        required = self.catalog.ids_with_tags(list(tags)) if tags else None
        if active:
            dated = self.catalog.ids_matching(where)  # type: ignore[arg-type]
            required = dated if required is None else required & dated
        if prefixes:  # id range scans of the path index: no paths are loaded
            inside = set().union(*(self.catalog.ids_under(p) for p in prefixes))
            required = inside if required is None else required & inside
        banned = self.catalog.ids_with_any_tag(list(no_tags)) if no_tags else set()
        return lambda i: (required is None or i in required) and i not in banned

    def _search_vector(self, vector: np.ndarray, k: int, min_score: float | None, *,
                       tags: Sequence[str] | None = None, no_tags: Sequence[str] | None = None,
                       folder: str | os.PathLike[str] | None = None, offset: int = 0,
                       accept: Callable[[str], bool] | None = None, text_query: TextQuery | None = None,
                       where: MetadataFilter | None = None, kind: str | None = None,
                       per_video: int = DEFAULT_PER_VIDEO) -> list[Hit]:
        """Hits ``offset .. offset+k`` of ``float32[d]`` ``vector``, best first, among those passing the
        filters (in the store where it can apply them) and ``accept(path)``; with ``text_query``, only
        images whose text matches it (``match="both"``, with the snippet). Items are ranked and files
        answered: a video once, at its best frame, listing up to ``per_video`` frames (``kind``: only photos
        or only videos)."""
        if k < 1:
            raise UserInputError(f"k must be at least 1, got {k}")
        if offset < 0:
            raise UserInputError(f"offset must be at least 0, got {offset}")
        index = self._vector_index(save=False)
        if len(index) == 0:
            raise EmptyLibraryError(
                f"the library {self.directory} has no images indexed with {self.spec.name}; "
                f"run `glimpse --model {self.spec.name} index PATH` first"
            )
        self._note_coverage()
        tags, no_tags, prefixes = list(tags or ()), list(no_tags or ()), folder_prefixes(folder)
        self._check_filters(tags + no_tags, prefixes, folder)
        keep = base_keep = self._id_filter(tags, no_tags, prefixes)  # on file ids
        rank = _Ranking(k, offset, min_score, accept, kind, per_video)
        allowed: set[int] | None = None
        if where is not None and where.active:
            if text_query is None and self.catalog.count_matching(where) > BROAD_FILTER_SHARE * len(index):
                # A broad filter (a camera, a decade) keeps most candidates: checking the store's candidates
                # against it beats fetching and searching among a third of the library's ids.
                checked = MetadataCheck(self.catalog, where)
                keep = checked if base_keep is None else (lambda i: checked(i) and base_keep(i))
            else:
                allowed = self.catalog.ids_matching(where)
                keep = allowed.__contains__ if base_keep is None else (lambda i: i in allowed and base_keep(i))
        if kind == KIND_VIDEO and allowed is None and text_query is None:
            frames = self.catalog.frame_ids()
            if len(frames) <= BROAD_FILTER_SHARE * len(index) or len(frames) <= EXACT_FILTER_LIMIT:
                # Few frames among many photos: searched among, not found by widening through the photos.
                chosen = np.fromiter(frames, dtype=np.int64, count=len(frames))
                among = self._search_among(index, vector, chosen, rank, keep)
                if among is not None:
                    return among
                return self._score_exactly(vector, chosen.tolist(), rank, keep, match=MATCH_CLIP)
        snippets: dict[int, str] = {}
        if text_query is not None:
            matches = [m for m in self.catalog.text_matches(text_query) if keep is None or keep(m.file_id)]
            snippets = {m.file_id: m.line for m in matches}
            if len(snippets) <= EXACT_FILTER_LIMIT:
                return self._score_exactly(vector, list(snippets), rank, None, snippets=snippets)
            keep = snippets.__contains__  # tags and folder were applied to the matches already
        elif allowed is not None:
            # Metadata filters become one id set (no store holds capture metadata): searched among inside the store
            # where it can (FAISS's id selector), else scored exactly from the stored vectors when not too many,
            # else by widening the store's search as tag filters do.
            files = [i for i in allowed if base_keep is None or base_keep(i)]
            items = self.catalog.with_frames(files)
            chosen = np.fromiter(items, dtype=np.int64, count=len(items))
            among = self._search_among(index, vector, chosen, rank, None)
            if among is not None:
                return among
            if len(chosen) <= EXACT_FILTER_LIMIT:
                return self._score_exactly(vector, chosen.tolist(), rank, None, match=MATCH_CLIP)
        total = len(index)
        # A video's frames crowd the first candidates: fetched per_video times as deep to list its best ones.
        fetch = rank.want * (per_video if self.catalog.has_frames() else 1)
        while True:  # widen the search until enough hits pass every filter, or the matches are exhausted
            found, exhausted = self._candidates(index, vector, fetch, tags, no_tags, prefixes)
            groups = rank.groups(self.catalog, found, keep)
            below = min_score is not None and bool(found) and found[-1][1] < min_score
            if len(groups) >= rank.want or exhausted or below or fetch >= total:
                break
            fetch = min(total, fetch * 4)
        return self._hits(rank.page(groups), MATCH_BOTH if text_query is not None else MATCH_CLIP, snippets)

    def _search_among(self, index: VectorIndex, vector: np.ndarray, chosen: np.ndarray, rank: _Ranking,
                      keep: Callable[[int], bool] | None) -> list[Hit] | None:
        """The page of ``rank`` among the item ids ``chosen`` (int64[m]), searched inside the store; None when the
        store cannot, or its answer may be incomplete (an IVF index meets only the ids in the lists it probes)."""
        fetch = min(len(chosen), rank.want * rank.per_video)
        while True:
            if fetch == 0:
                return []
            result = index.search_among(vector[None, :], fetch, chosen)
            if result is None or len(result[0].ids) < fetch:
                return None
            found = list(zip(result[0].ids.tolist(), result[0].scores.tolist(), strict=True))
            groups = rank.groups(self.catalog, found, keep)
            below = rank.min_score is not None and found[-1][1] < rank.min_score
            if len(groups) >= rank.want or below or fetch >= len(chosen):
                break
            fetch = min(len(chosen), fetch * 4)
        return self._hits(rank.page(groups), MATCH_CLIP)

    def _score_exactly(self, vector: np.ndarray, items: list[int], rank: _Ranking,
                       keep: Callable[[int], bool] | None, *, match: str = MATCH_BOTH,
                       snippets: dict[int, str] | None = None) -> list[Hit]:
        """The ``items`` (with the frames of those that are videos) ranked by the exact cosine of their stored
        vectors; ``snippets``: the text matches' lines, by file id."""
        ids, vectors = self.catalog.embeddings(self.spec.key, self.catalog.with_frames(items))
        scores = vectors @ vector
        order = sorted(range(len(ids)), key=lambda n: (-scores[n], ids[n]))
        found = [(int(ids[n]), float(scores[n])) for n in order]
        return self._hits(rank.page(rank.groups(self.catalog, found, keep)), match, snippets or {})

    def _hits(self, groups: list[list[tuple[ItemRecord, float]]], match: str,
              snippets: dict[int, str] | None = None) -> list[Hit]:
        """One hit per group (a file; a video with its best frames), with its tags."""
        tag_map = self.catalog.tags_of([g[0][0].file.id for g in groups])
        hits = []
        for group in groups:
            item, score = group[0]
            rec = item.file
            frames = tuple((i.time, s, i.id) for i, s in group if i.time is not None)
            hits.append(Hit(rec.id, rec.path, float(score), rec.width, rec.height, tuple(tag_map.get(rec.id, ())),
                            match, (snippets or {}).get(rec.id), time=item.time, frames=frames))
        return hits

    def _candidates(self, index: VectorIndex, vector: np.ndarray, fetch: int, tags: list[str], no_tags: list[str],
                    prefixes: Sequence[str]) -> tuple[list[tuple[int, float]], bool]:
        """The best ``fetch`` ``(item id, score)`` of the index, and whether there are no more to find. A store that
        can filter (Milvus) applies the tag and folder filters inside its search."""
        if tags or no_tags or prefixes:
            pushed = index.search_filtered(vector[None, :], fetch, path_prefixes=prefixes, tags=tags, no_tags=no_tags)
            if pushed is not None:
                pairs = list(zip(pushed[0].ids.tolist(), pushed[0].scores.tolist(), strict=True))
                return pairs, len(pairs) < fetch
        result = index.search(vector[None, :], fetch)[0]
        found = [(i, s) for i, s in zip(result.ids.tolist(), result.scores.tolist(), strict=True) if i >= 0]
        return found, fetch >= len(index)

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
        covered, images = self.catalog.count_covered_files(self.spec.key), self.catalog.counts()[STATE_OK]
        if 0 < covered < images:
            notice(
                f"{self.spec.name} has vectors of {covered} of the {images} images in this library; run "
                f"`glimpse --model {self.model_name} index` on its folders to search the rest"
            )

    def _require_content(self) -> None:
        # Checked before the model is loaded: an empty library should not trigger a model download. One probe, not
        # models(): counting every model's vectors cost 0.2 s per search at 100k images.
        if not self.catalog.has_embeddings():
            raise EmptyLibraryError(
                f"the library {self.directory} is empty; run `glimpse index PATH` first"
            )

    def query_vector(self, query: str, images: Sequence[str | os.PathLike[str]] | None = None) -> np.ndarray:
        """The L2-normalised ``float32[d]`` vector of a query string (with optional image terms)."""
        from glimpse.query import embed_terms, parse_query

        return embed_terms(parse_query(query, list(images or [])), self.encoder)

    def search(self, query: str, k: int = 10, *, images: Sequence[str | os.PathLike[str]] | None = None,
               min_score: float | None = None, tags: Sequence[str] | None = None,
               no_tags: Sequence[str] | None = None, folder: str | os.PathLike[str] | None = None,
               offset: int = 0, accept: Callable[[str], bool] | None = None, lang: str | None = None,
               text: str | Sequence[str] | None = None, text_weight: float = DEFAULT_TEXT_WEIGHT,
               where: MetadataFilter | None = None, sort: str = SORT_SCORE, kind: str | None = None,
               per_video: int = DEFAULT_PER_VIDEO) -> list[Hit]:
        """Best-first hits for a text query (``+``/``-`` terms, ``w:term`` weights, image terms).

        Videos are searched by their sampled frames: a video is one hit, at its best frame (``Hit.time``), listing
        up to ``per_video`` of its best frames (``Hit.frames``); ``kind``: ``"photo"`` or ``"video"`` keeps only
        those (None: both).

        ``where``: bounds on the capture metadata (``MetadataFilter``: taken after/before, camera, near a
        place); ``sort``: ``"score"`` (best first, the default) or ``"date"`` (the same hits, newest capture
        first, undated last). Every hit carries its capture metadata (``Hit.meta``).

        ``lang``: the query's language (``zh``…) for models that read a language token (NLLB-CLIP); ``None``
        takes the locale's. An unknown code is a ``UserInputError`` listing the accepted ones.

        ``tags``: hits must carry all of these tags; ``no_tags``: hits must carry none of them (tags compare
        ASCII case-insensitively); ``folder``: hits must lie inside this folder (see ``folder_prefixes``).
        Up to ``k`` hits pass the filters: a store that can filter (Milvus) does it inside its search,
        otherwise the search widens until ``k`` hits pass or the index is exhausted. ``offset`` skips that
        many passing hits (pages); ``accept(path) -> bool`` is one more filter (the server's "may be served").

        Text in the images (stored by ``index(..., ocr=True)``; rules in ``glimpse.ocr.text_index``):
        ``text:word`` / ``text:"a phrase"`` terms in ``query``, and ``text`` (a phrase, or several that must
        all match), keep only images whose text contains them (case-, width- and space-insensitive
        substrings); with nothing else in the query it is a full-text search (no model is loaded), otherwise
        the CLIP ranking filtered by them. A plain query is also matched against the text where the library
        has any: both rankings are fused by reciprocal rank, the text one weighted ``text_weight`` (0: CLIP
        only; default ``DEFAULT_TEXT_WEIGHT``). ``min_score`` applies to the CLIP similarity.
        """
        from glimpse.query import embed_terms, parse_query

        check_sort(sort)
        check_kind(kind)
        check_per_video(per_video)
        rest, in_query = split_text_terms(query)
        extra = text_terms([text] if isinstance(text, str) else list(text or ()))
        text_query = merge(in_query, extra)
        text_weight = check_text_weight(text_weight)
        if text_query is not None and not rest and not images:
            return self._finish(self._search_text(text_query, k, tags=tags, no_tags=no_tags, folder=folder,
                                                  where=where, offset=offset, accept=accept, kind=kind), sort)
        if not rest and not images and query.strip():
            raise UserInputError(f"nothing to search for in {query!r}: give words, text:\"…\" terms or an image")
        terms = parse_query(rest, list(images or []))  # a malformed query fails before any model work
        if lang is not None:
            from glimpse.languages import check_language

            check_language(lang)  # as early: a wrong code costs no model load
        self._require_content()
        if text_query is not None:
            self._require_text()  # before the model loads
        # Opened one after the other: loading the text tower on a thread beside the index was slower, both hold
        # the GIL for most of their time (BENCHMARKS.md, cold search).
        self._vector_index(save=False)
        vector = embed_terms(terms, self.encoder, lang)
        plain = plain_query_terms([t.text for t in terms if t.text is not None and t.weight > 0])
        return self._finish(self._ranked(vector, k, min_score, tags=tags, no_tags=no_tags, folder=folder, where=where,
                                         offset=offset, accept=accept, text_query=text_query, plain=plain,
                                         text_weight=text_weight, kind=kind, per_video=per_video), sort)

    def _finish(self, hits: list[Hit], sort: str = SORT_SCORE) -> list[Hit]:
        """Hits with their capture metadata, in the asked order (``SORT_DATE``: newest capture first, undated
        last, ties by rank)."""
        metas = self.catalog.metadata_of([h.id for h in hits])
        hits = [replace(h, meta=metas[h.id].to_dict()) if h.id in metas else h for h in hits]
        return self.sorted_hits(hits, sort)

    @staticmethod
    def sorted_hits(hits: list[Hit], sort: str = SORT_SCORE) -> list[Hit]:
        """``hits`` in the order ``sort`` names: as ranked (``"score"``), or newest capture first (``"date"``;
        undated hits last, ties in rank order)."""
        if check_sort(sort) != SORT_DATE:
            return hits
        dated = [h for h in hits if h.meta and h.meta.get("taken_local")]
        dated.sort(key=lambda h: h.meta["taken_local"], reverse=True)  # type: ignore[index]  # stable: ties by rank
        return dated + [h for h in hits if not (h.meta and h.meta.get("taken_local"))]

    def _ranked(self, vector: np.ndarray, k: int, min_score: float | None, *, tags: Sequence[str] | None,
                no_tags: Sequence[str] | None, folder: str | os.PathLike[str] | None, offset: int,
                accept: Callable[[str], bool] | None, text_query: TextQuery | None, plain: TextQuery | None,
                text_weight: float, where: MetadataFilter | None = None, kind: str | None = None,
                per_video: int = DEFAULT_PER_VIDEO) -> list[Hit]:
        """CLIP's ranking of ``vector``: filtered by ``text_query`` when given, else fused with the text
        ranking of ``plain`` where the library has text (and ``text_weight`` > 0), else alone."""
        items: dict[str, Any] = {"kind": kind, "per_video": per_video}
        if text_query is not None:
            self._require_text()
            return self._search_vector(vector, k, min_score, tags=tags, no_tags=no_tags, folder=folder, where=where,
                                       offset=offset, accept=accept, text_query=text_query, **items)
        if plain is None or text_weight == 0 or kind == KIND_VIDEO or not self.catalog.has_text(lines=True):
            return self._search_vector(vector, k, min_score, tags=tags, no_tags=no_tags, folder=folder, where=where,
                                       offset=offset, accept=accept, **items)
        return self._search_fused(vector, plain, k, min_score, text_weight, tags=tags, no_tags=no_tags,
                                  folder=folder, offset=offset, accept=accept, where=where, **items)

    def search_text(self, text: str | Sequence[str], k: int = 10, *, tags: Sequence[str] | None = None,
                    no_tags: Sequence[str] | None = None, folder: str | os.PathLike[str] | None = None,
                    offset: int = 0, accept: Callable[[str], bool] | None = None,
                    where: MetadataFilter | None = None, kind: str | None = None) -> list[Hit]:
        """A full-text search of the images' stored text (no model is loaded): images whose text contains
        ``text`` (one phrase, or several that must all match), best text score first, ``match="ocr"``, the
        matched line as ``snippet``. Filters, ``offset`` and ``accept`` as in ``search``; the same as
        ``search('text:"…"')``."""
        text_query = text_terms([text] if isinstance(text, str) else list(text))
        if text_query is None:
            raise UserInputError("no text to search for: give a word or a phrase")
        return self._finish(self._search_text(text_query, k, tags=tags, no_tags=no_tags, folder=folder, where=where,
                                              offset=offset, accept=accept, kind=check_kind(kind)))

    def _require_text(self) -> None:
        if not self.catalog.has_text():
            raise UserInputError(
                f"no image in the library {self.directory} has had its text read yet; run "
                "`glimpse index --ocr PATH` first"
            )

    def _text_hits(self, text_query: TextQuery, tags: Sequence[str] | None, no_tags: Sequence[str] | None,
                   folder: str | os.PathLike[str] | None, accept: Callable[[str], bool] | None,
                   where: MetadataFilter | None = None) -> tuple[list[TextMatch], dict[int, FileRecord]]:
        """The text matches passing the filters and ``accept``, best first, with their catalog rows."""
        tags, no_tags, prefixes = list(tags or ()), list(no_tags or ()), folder_prefixes(folder)
        self._check_filters(tags + no_tags, prefixes, folder)
        keep = self._id_filter(tags, no_tags, prefixes, where)
        matches = [m for m in self.catalog.text_matches(text_query) if keep is None or keep(m.file_id)]
        records = self.catalog.files_by_id([m.file_id for m in matches])
        matches = [m for m in matches if m.file_id in records and (accept is None or accept(records[m.file_id].path))]
        return matches, records

    def _search_text(self, text_query: TextQuery, k: int, *, tags: Sequence[str] | None,
                     no_tags: Sequence[str] | None, folder: str | os.PathLike[str] | None, offset: int,
                     accept: Callable[[str], bool] | None, where: MetadataFilter | None = None,
                     kind: str | None = None) -> list[Hit]:
        """A full-text search: images whose stored text matches, best text score first (videos have no text
        read: ``kind="video"`` finds nothing)."""
        if k < 1 or offset < 0:
            raise UserInputError(f"k must be at least 1 and offset at least 0, got k={k}, offset={offset}")
        self._require_text()
        if kind == KIND_VIDEO:
            return []
        matches, records = self._text_hits(text_query, tags, no_tags, folder, accept, where)
        chosen = matches[offset:offset + k]
        tag_map = self.catalog.tags_of([m.file_id for m in chosen])
        return [Hit(m.file_id, records[m.file_id].path, m.score, records[m.file_id].width,
                    records[m.file_id].height, tuple(tag_map.get(m.file_id, ())), MATCH_OCR, m.line)
                for m in chosen]

    def _search_fused(self, vector: np.ndarray, plain: TextQuery, k: int, min_score: float | None,
                      text_weight: float, *, tags: Sequence[str] | None, no_tags: Sequence[str] | None,
                      folder: str | os.PathLike[str] | None, offset: int, accept: Callable[[str], bool] | None,
                      where: MetadataFilter | None = None, kind: str | None = None,
                      per_video: int = DEFAULT_PER_VIDEO) -> list[Hit]:
        """CLIP's ranking and the text ranking of ``plain`` fused by reciprocal rank (``text_index.fuse``).

        Each side ranks its first ``max(FUSION_DEPTH, offset + k)``; a text match gets its exact CLIP score
        from its stored vector (it may lie beyond CLIP's ranked ones); text matches without a vector of the
        model in use are left out, as are those under ``min_score``.
        """
        depth = max(FUSION_DEPTH, offset + k)
        clip_hits = self._search_vector(vector, depth, min_score, tags=tags, no_tags=no_tags, folder=folder,
                                        where=where, accept=accept, kind=kind, per_video=per_video)
        matches, records = self._text_hits(plain, tags, no_tags, folder, accept, where)
        matches = matches[:depth]
        ids, vectors = self.catalog.embeddings(self.spec.key, [m.file_id for m in matches])
        cosine = dict(zip(ids.tolist(), (vectors @ vector).tolist(), strict=True))
        matches = [m for m in matches if m.file_id in cosine and (min_score is None or cosine[m.file_id] >= min_score)]
        by_id = {h.id: h for h in clip_hits}
        snippets = {m.file_id: m.line for m in matches}
        fused = fuse([h.id for h in clip_hits], [m.file_id for m in matches], text_weight)[offset:offset + k]
        tag_map = self.catalog.tags_of([i for i, _, _ in fused if i not in by_id])
        hits = []
        for file_id, value, match in fused:
            base = by_id.get(file_id)
            if base is None:
                rec = records[file_id]
                base = Hit(file_id, rec.path, float(cosine[file_id]), rec.width, rec.height,
                           tuple(tag_map.get(file_id, ())))
            hits.append(replace(base, match=match, snippet=snippets.get(file_id), rank_score=value))
        return hits

    def search_vector(self, vector: np.ndarray, k: int = 10, *, min_score: float | None = None,
                      tags: Sequence[str] | None = None, no_tags: Sequence[str] | None = None,
                      folder: str | os.PathLike[str] | None = None, offset: int = 0,
                      accept: Callable[[str], bool] | None = None, text: str | Sequence[str] | None = None,
                      fuse: str | None = None, text_weight: float = DEFAULT_TEXT_WEIGHT,
                      where: MetadataFilter | None = None, kind: str | None = None,
                      per_video: int = DEFAULT_PER_VIDEO) -> list[Hit]:
        """Best-first hits for an L2-normalised ``float32[d]`` query vector (e.g. built by the server).

        Filters, ``offset`` and ``accept`` as in ``search``; ``text``: only images whose text matches (as
        ``search``'s ``text``); ``fuse``: the plain query words the vector was embedded from, whose match
        against the images' text is fused with the vector's ranking as ``search`` does (``text_weight``);
        ``kind`` and ``per_video`` as in ``search``.
        """
        text_weight = check_text_weight(text_weight)
        check_kind(kind)
        check_per_video(per_video)
        text_query = text_terms([text] if isinstance(text, str) else list(text or ()))
        plain = plain_query_terms([fuse]) if fuse and fuse.strip() else None
        self._require_content()
        return self._finish(self._ranked(np.asarray(vector, dtype=np.float32), k, min_score, tags=tags,
                                         no_tags=no_tags, folder=folder, offset=offset, accept=accept,
                                         text_query=text_query, plain=plain, text_weight=text_weight, where=where,
                                         kind=kind, per_video=per_video))

    def recent(self, k: int = 50, offset: int = 0, *, accept: Callable[[str], bool] | None = None,
               tags: Sequence[str] | None = None, no_tags: Sequence[str] | None = None,
               folder: str | os.PathLike[str] | None = None, where: MetadataFilter | None = None) -> list[Hit]:
        """Images ``offset .. offset+k`` among the most recently indexed with a vector of the model in use,
        newest first (score 0.0), keeping those that pass the filters and ``accept`` as ``search`` does."""
        if k < 1 or offset < 0:
            raise UserInputError(f"k must be at least 1 and offset at least 0, got k={k}, offset={offset}")
        tags, no_tags, prefixes = list(tags or ()), list(no_tags or ()), folder_prefixes(folder)
        self._check_filters(tags + no_tags, prefixes, folder)
        keep = self._id_filter(tags, no_tags, prefixes, where)
        want, kept, seen = offset + k, [], 0
        batch = max(want, 100)
        while len(kept) < want:  # page through the catalog until enough rows pass
            records = self.catalog.recent_files(self.spec.key, batch, seen)
            kept += [r for r in records if (keep is None or keep(r.id)) and (accept is None or accept(r.path))]
            seen += len(records)
            if len(records) < batch:
                break
        chosen = kept[offset:want]
        tag_map = self.catalog.tags_of([r.id for r in chosen])
        hits = []
        for r in chosen:
            # A video shows its first frame.
            first = self.catalog.frames_of(r.id, self.spec.key)[:1] if is_video_format(r.format) else []
            hits.append(Hit(r.id, r.path, 0.0, r.width, r.height, tuple(tag_map.get(r.id, ())),
                            time=first[0][1] if first else None,
                            frames=((first[0][1], 0.0, first[0][0]),) if first else ()))
        return self._finish(hits)

    def range_search(self, queries: np.ndarray, threshold: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per row of ``float32[q, d]`` ``queries``: ``(int64 ids, float32 scores)`` of every indexed vector
        scoring strictly above ``threshold`` (cosine), from the vector store caught up with the catalog."""
        return self._vector_index(save=False).range_search(np.asarray(queries, dtype=np.float32), float(threshold))

    def image_files(self, paths: Sequence[str | os.PathLike[str]]) -> list[str]:
        """The image files under ``paths`` (files and folders), as ``glimpse.pipeline.image_files`` lists them."""
        from glimpse.pipeline import image_files

        return image_files(paths)

    def indexed_files(self, *, videos: bool = True) -> list[FileRecord]:
        """Every readable indexed image (and video, unless ``videos`` is False) of the library, in id order."""
        return self.catalog.indexed_files(videos=videos)

    def vectors(self, paths: Sequence[str | os.PathLike[str]] | None = None, *, batch_size: int = 32,
                progress: Progress | None = None) -> ImageVectors:
        """Vectors of the images under ``paths`` (``None``: every indexed image), with the model in use.

        The one freshness rule of glimpse: a stored vector is used only for a file whose content is still
        the content it was encoded from — its size and mtime are unchanged since indexing, or its content
        hash equals that of a file holding a vector of this model (a touched or copied file). Anything else
        is decoded and encoded once, so a file changed since indexing is never answered with a stale vector.
        Files that cannot be read are reported in ``errors``, never fatal. ``progress`` counts encoded files.
        """
        if paths is None:
            records = self.catalog.indexed_files(videos=False)  # a video's vectors are its frames
            if not records:
                raise EmptyLibraryError(
                    f"the library {self.directory} has no images indexed; run `glimpse index PATH` first"
                )
            files = [r.path for r in records]
            known: dict[str, FileRecord] = {r.path: r for r in records}
        else:
            files = self.image_files(paths)
            if not files:
                raise UserInputError(f"no image files found in {', '.join(os.fspath(p) for p in paths)}")
            known = {}
        return self._vectors_of(files, known, batch_size=batch_size, progress=progress)

    def vectors_of(self, records: Sequence[FileRecord], *, batch_size: int = 32,
                   progress: Progress | None = None) -> ImageVectors:
        """``vectors`` of these catalog rows (from ``indexed_files``, or a catalog query such as the files a
        tagger has not tagged yet), by the same freshness rule; a row whose file is gone is in ``errors``."""
        return self._vectors_of([r.path for r in records], {r.path: r for r in records}, batch_size=batch_size,
                                progress=progress)

    def _vectors_of(self, files: list[str], known: dict[str, FileRecord], *, batch_size: int,
                    progress: Progress | None) -> ImageVectors:
        from glimpse.pipeline import content_hash

        key = self.spec.key
        result = ImageVectors(list(files), np.zeros((len(files), self.spec.dim), dtype=np.float32),
                              [None] * len(files), [None] * len(files))
        ok = np.zeros(len(files), dtype=bool)
        failed: set[int] = set()
        digests: dict[int, str] = {}  # row -> content hash to look a stored vector up by
        known_hash: dict[int, str | None] = {}  # row -> the hash its catalog row (state ok) was indexed with
        for row, path in enumerate(files):
            rec = known.get(path) or self.catalog.file_by_path(path) or self.catalog.file_by_path(
                os.path.realpath(path))
            try:
                st = os.stat(path)
            except OSError as exc:
                reason = f"cannot read file: {(exc.strerror or str(exc)).lower()}"
                result.errors.append({"path": path, "reason": reason})
                failed.add(row)
                continue
            if rec is not None:
                result.ids[row] = rec.id
                known_hash[row] = rec.hash if rec.state == STATE_OK else None
            if rec is not None and rec.state == STATE_OK and rec.hash and (rec.size, rec.mtime_ns) == (
                    st.st_size, st.st_mtime_ns):
                digests[row] = rec.hash  # unchanged since indexing: the catalog's hash holds, as for the indexer
                continue
            try:
                with open_regular_file(path) as fh:
                    digests[row] = content_hash(fh)
            except (ImageError, OSError) as exc:
                reason = str(exc) if isinstance(exc, ImageError) else (exc.strerror or str(exc)).lower()
                result.errors.append({"path": path, "reason": reason})
                failed.add(row)
        # A file still holding the content its own row was indexed with uses that row's vector; any other
        # content is looked up by hash among every file with a vector of this model (a copy, a changed file
        # whose new content was indexed elsewhere).
        own = {row: result.ids[row] for row, d in digests.items()
               if result.ids[row] is not None and known_hash.get(row) == d}
        self._fill_stored(result, ok, own)
        rest = {row: d for row, d in digests.items() if not ok[row]}
        holders = self.catalog.embedded_ids_by_hash(rest.values(), key) if rest else {}
        self._fill_stored(result, ok, {row: holders[d] for row, d in rest.items() if d in holders})
        result.stored = int(ok.sum())
        todo = [row for row in range(len(files)) if not ok[row] and row not in failed]
        if progress is not None:
            progress.start(len(todo))
        try:
            for start in range(0, len(todo), batch_size):
                rows, images = [], []
                for row in todo[start:start + batch_size]:
                    try:
                        images.append(open_image(files[row], min_side=self.spec.preprocess.min_side).image)
                        rows.append(row)
                    except ImageError as exc:
                        result.errors.append({"path": files[row], "reason": str(exc)})
                if images:
                    result.vectors[rows] = self.encoder.encode_images(images)
                    ok[rows] = True
                    result.encoded += len(rows)
                if progress is not None:
                    progress.advance(len(todo[start:start + batch_size]))
        finally:
            if progress is not None:
                progress.finish()
        if not ok.all():
            keep = np.flatnonzero(ok)
            result.paths = [files[i] for i in keep]
            result.ids = [result.ids[i] for i in keep]
            result.stored_from = [result.stored_from[i] for i in keep]
            result.vectors = result.vectors[keep]
        return result

    def _fill_stored(self, result: ImageVectors, ok: np.ndarray, source: dict[int, int]) -> None:
        """Rows of ``result`` take the stored vector of the file id ``source[row]`` where there is one."""
        if not source:
            return
        key = self.spec.key
        wanted = set(source.values())
        # Most of the library: one scan of the model's vectors beats id look-ups in chunks of 500.
        whole = len(wanted) > self.catalog.count_embeddings(key) // 2
        stored_ids, stored = self.catalog.embeddings(key, None if whole else wanted)
        position = {file_id: n for n, file_id in enumerate(stored_ids.tolist())}
        for row, file_id in source.items():
            n = position.get(file_id)
            if n is not None:
                result.vectors[row] = stored[n]
                result.stored_from[row] = file_id
                ok[row] = True

    def image_vector(self, image: str | os.PathLike[str] | int) -> np.ndarray:
        """The ``float32[d]`` vector of an indexed image (by id) or of an image file (stored when still
        current by the freshness rule of ``vectors``, else freshly encoded)."""
        if isinstance(image, int):
            ids, vectors = self.catalog.embeddings(self.spec.key, [image])
            if not len(ids):
                frames = self.catalog.frames_of(image, self.spec.key)
                if frames:  # a video: by its frames, the frame ids of `--json` hits
                    listed = ", ".join(str(i) for i, _ in frames[:5]) + (", …" if len(frames) > 5 else "")
                    raise UserInputError(f"{image} is a video; give one of its frames' ids instead ({listed})")
                raise UserInputError(f"no image with id {image} is indexed with {self.spec.name}")
            return vectors[0]
        path = os.path.abspath(os.path.expanduser(os.fspath(image)))
        if not os.path.isfile(path):
            raise UserInputError(f"{image} is not a file; give an image path or an indexed image id")
        from glimpse.video import is_video_name

        if is_video_name(path):
            raise UserInputError(f"{image} is a video; search by one of its frames: give the frame's id (`glimpse "
                                 "search --json` lists a video hit's frames with their ids)")
        found = self._vectors_of([path], {}, batch_size=1, progress=None)
        if found.errors:
            raise ImageError(f"{image}: {found.errors[0]['reason']}")  # the reason alone does not say which file
        return found.vectors[0]

    def similar(self, image: str | os.PathLike[str] | int, k: int = 10, *, min_score: float | None = None,
                tags: Sequence[str] | None = None, no_tags: Sequence[str] | None = None,
                folder: str | os.PathLike[str] | None = None, where: MetadataFilter | None = None,
                kind: str | None = None, per_video: int = DEFAULT_PER_VIDEO) -> list[Hit]:
        """Images most like ``image`` (a path, an indexed id, or a video frame's id from ``Hit.frames``), best
        first; an indexed image finds itself (when it passes the filters, which are those of ``search``)."""
        check_kind(kind)
        check_per_video(per_video)
        self._require_content()
        return self._finish(self._search_vector(self.image_vector(image), k, min_score, tags=tags, no_tags=no_tags,
                                                folder=folder, where=where, kind=kind, per_video=per_video))

    # -- text (OCR) ----------------------------------------------------------------------------------
    def ocr_engine(self, model: str | None = None, *, threads: int | None = None) -> OcrEngine:
        """The OCR engine of ``model`` (a name or model folder as ``glimpse.ocr.engine`` takes it; None: the
        engine this library was given, else the default model), loaded once per (model, threads).
        ``threads``: onnxruntime intra-op threads per call (None: the engine's default)."""
        if model is None and self._borrowed_ocr is not None:
            return self._borrowed_ocr
        cached = self._ocr_engines.get((model, threads))
        if cached is None:
            from glimpse.ocr.engine import open_ocr_engine

            cached = self._ocr_engines[(model, threads)] = open_ocr_engine(model, threads=threads)
        return cached

    def ocr(self, path: str | os.PathLike[str], *, model: str | None = None) -> list[OcrLine]:
        """The text lines of the image file ``path`` in reading order, boxes in full-image pixels.

        Stored lines when the OCR model (``model``, see ``ocr_engine``) read the file's current content — the
        file's own, or any indexed file with the same content hash — else the engine reads the file now
        (nothing is stored: ``index --ocr`` stores). Works on files outside the library too. An image without
        text gives ``[]``; a file that cannot be read raises ImageError naming it.
        """
        from glimpse.pipeline import content_hash, ocr_file

        full = os.path.abspath(os.path.expanduser(os.fspath(path)))
        if not os.path.isfile(full):
            raise UserInputError(f"{path} is not a file; give an image file")
        engine = self.ocr_engine(model)
        rec = self.catalog.file_by_path(full) or self.catalog.file_by_path(os.path.realpath(full))
        try:
            st = os.stat(full)
            if rec is not None and rec.state == STATE_OK and (rec.size, rec.mtime_ns) == (st.st_size, st.st_mtime_ns):
                digest = rec.hash  # unchanged since indexing: the catalog's hash holds (the freshness rule)
            else:
                with open_regular_file(full) as fh:
                    digest = content_hash(fh)
        except OSError as exc:
            raise ImageError(f"{path}: cannot read file: {(exc.strerror or str(exc)).lower()}") from exc
        candidates = [rec.id] if rec is not None else []
        if digest is not None:
            source = self.catalog.ocr_source(digest, engine.model_id)
            candidates += [source] if source is not None else []
        for file_id in candidates:
            stored = self.catalog.ocr_text(file_id)
            if stored is not None and stored[0] == engine.model_id and stored[1] == digest:
                return stored[2]
        try:
            return ocr_file(full, engine)
        except ImageError as exc:
            raise ImageError(f"{path}: {exc}") from exc

    def text_of(self, image: int | str | os.PathLike[str]) -> list[OcrLine] | None:
        """The stored text lines of an indexed image (by id or path) in reading order, boxes in full-image
        pixels; None when its current content (as indexed) has not been read by OCR or it is not indexed.
        Only the catalog is read (no model, no file access): for the server's detail view."""
        if isinstance(image, int):
            rec = self.catalog.files_by_id([image]).get(image)
        else:
            raw = os.path.abspath(os.path.expanduser(os.fspath(image)))
            rec = self.catalog.file_by_path(raw) or self.catalog.file_by_path(os.path.realpath(raw))
        if rec is None or rec.state != STATE_OK:
            return None
        stored = self.catalog.ocr_text(rec.id)
        if stored is None or stored[1] != rec.hash:
            return None
        return stored[2]

    # -- maintenance ---------------------------------------------------------------------------------
    def remove(self, paths: Sequence[str | os.PathLike[str]]) -> int:
        """Forget files and folders (the files on disk are untouched); returns how many were forgotten."""
        removed = 0
        with self.writing():
            for raw in paths:
                path = os.path.realpath(os.path.expanduser(os.fspath(raw)))
                count = self.catalog.delete_under(path)
                dropped_root = self.catalog.remove_root(path)
                if count == 0 and not dropped_root:
                    raise UserInputError(f"{raw} is not in the library; `glimpse status` lists its roots")
                removed += count
        return removed

    def status(self) -> LibraryStatus:
        counts = self.catalog.counts()
        models = self.catalog.models()
        key = None
        index_vectors = 0
        index_kind = "faiss IDMap2,Flat (inner product)"
        try:
            key = self.spec.key
            from glimpse.vectors.sync import describe_store

            index_kind, index_vectors = describe_store(self.store, self.directory / INDEX_DIRNAME, self.catalog,
                                                       key, self.spec.dim)
        except GlimpseError:
            pass  # status must work even when the model cannot be loaded here
        vectors = next((m["embeddings"] for m in models if m["key"] == key), 0)
        videos = self.catalog.video_counts()
        return LibraryStatus(
            library=str(self.directory),
            model=self.model_name,
            model_key=key,
            roots=[os.fsencode(r).decode("utf-8", "replace") for r in self.catalog.roots()],
            images=counts[STATE_OK] - videos["videos"],  # photos; videos are counted on their own
            errors=counts["error"],
            skipped=counts["skipped"],
            vectors=vectors,
            index_kind=index_kind,
            index_vectors=index_vectors,
            models=models,
            recent_errors=[{"path": r.display_path, "reason": r.error or ""} for r in self.catalog.errors(limit=20)],
            ocr=self.catalog.ocr_counts(),
            videos=videos,
        )

    def close(self) -> None:
        if "encoder" in self.__dict__ and not self._borrowed_encoder:
            self.encoder.close()
        if self._index is not None:  # a Milvus store holds a client connection
            self._index.close()
        self.catalog.close()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_STANDALONE_OCR: dict[str | None, OcrEngine] = {}


def ocr_image(path: str | os.PathLike[str], *, model: str | None = None) -> list[OcrLine]:
    """The text lines of an image file without a library (``Library.ocr`` without stored lines): reading
    order, boxes in full-image pixels, ``[]`` for an image without text; ImageError naming an unreadable file."""
    from glimpse.ocr.engine import open_ocr_engine
    from glimpse.pipeline import ocr_file

    full = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.isfile(full):
        raise UserInputError(f"{path} is not a file; give an image file")
    engine = _STANDALONE_OCR.get(model)
    if engine is None:  # loaded once per process and model: `glimpse ocr` reads many files with one
        engine = _STANDALONE_OCR[model] = open_ocr_engine(model)
    try:
        return ocr_file(full, engine)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from exc


def open_library(path: str | os.PathLike[str] | None = None, model: str | None = None, *,
                 device: str = "cpu", store: str | None = None, create: bool = True) -> Library:
    """Open (creating if needed) the library at ``path`` bound to ``model`` (name or model directory).

    ``store``: the vector store — None for the embedded FAISS index, a ``milvus://`` URI or a milvus-lite
    ``.db`` file for Milvus. ``create=False``: a folder without a library raises ``LibraryNotFoundError``
    instead of becoming an empty library (for commands that only read).
    """
    return Library(path, model, device=device, store=store, create=create)
