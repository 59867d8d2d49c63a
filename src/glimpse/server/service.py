"""What the HTTP routes call: one Library shared by all request threads, made safe for them.

FastAPI runs sync endpoints in a thread pool, so several requests use the library at once:

* the Catalog guards its one SQLite connection with its own lock;
* the in-memory FAISS index is *mutated* when a search catches it up with the catalog, so catch-up and
  search run under ``_index_lock`` (a flat search of a library this server holds takes milliseconds);
* Hugging Face fast tokenizers fail ("Already borrowed") when two threads tokenize at once, so texts are
  encoded through :attr:`LibraryService.text_encoder`, one caller at a time in short first-come turns (a
  classify's many labels never hold it across a search; see ``textturns``); image encoding (a pure forward
  pass) needs no lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from glimpse.catalog import STATE_OK, FileRecord, is_video_format
from glimpse.errors import UserInputError
from glimpse.images import DEFAULT_MAX_MEGAPIXELS, decode_image
from glimpse.items import DEFAULT_PER_VIDEO
from glimpse.library import Hit, Library
from glimpse.server.jobs import Job, JobManager
from glimpse.server.security import servable_path
from glimpse.server.tags import Tags
from glimpse.server.textturns import TurnTakingEncoder
from glimpse.server.thumbs import DEFAULT_THUMB_SIZE, ThumbnailCache
from glimpse.settings import LibrarySettings

MAX_K = 200
MAX_OFFSET = 10_000
MAX_TEXT_CHARS = 1000  # a query, or one label
# Labels x prompt templates are encoded per request (8 templates: 800 texts, ~2 s on a CPU for a base model).
MAX_CLASSIFY_LABELS = 100


class NotFoundError(UserInputError):
    """The requested image does not exist or may not be served (the HTTP layer answers 404)."""


@dataclass(frozen=True)
class Page:
    """One page of results: ``hits`` best first, ``more`` when a further page exists."""

    hits: list[Hit]
    offset: int
    more: bool


def _printable(path: str) -> str:
    return os.fsencode(path).decode("utf-8", "replace")


def check_page(k: int, offset: int) -> None:
    """UserInputError unless ``1 <= k <= MAX_K`` and ``0 <= offset <= MAX_OFFSET``."""
    if not 1 <= k <= MAX_K:
        raise UserInputError(f"k must be between 1 and {MAX_K}, got {k}")
    if not 0 <= offset <= MAX_OFFSET:
        raise UserInputError(f"offset must be between 0 and {MAX_OFFSET}, got {offset}")


def refuse_filesystem_root(path: str, given_as: str, advice: str = "give a folder of images instead") -> None:
    """UserInputError when the real ``path`` is a file-system root (``/``, or a drive on Windows)."""
    if os.path.dirname(path) == path:
        raise UserInputError(f"refusing to index {path} (in {given_as}): that is the whole file system, and "
                             f"the server would read every file on the machine; {advice}")


class LibraryService:
    """The server's view of the library ``settings`` name (the CLI's global options: library, model, store,
    device), opened once and shared by the request threads."""

    def __init__(self, settings: LibrarySettings, *, roots: list[str] | None = None,
                 max_megapixels: float = DEFAULT_MAX_MEGAPIXELS, thumb_size: int = DEFAULT_THUMB_SIZE,
                 index_batch_size: int = 32) -> None:
        # Roots are checked before the library is opened: a refused start touches nothing.
        self.configured_roots = [os.path.realpath(os.path.expanduser(r)) for r in roots or []]
        for root in self.configured_roots:
            refuse_filesystem_root(root, "--root")
            if not os.path.isdir(root):
                raise UserInputError(f"root {root} is not a folder; give folders the server may index")
        self.settings = settings
        self.library: Library = Library.from_settings(settings)
        self.max_megapixels = max_megapixels
        self.index_batch_size = index_batch_size
        self.thumbs = ThumbnailCache(self.library.directory, thumb_size, max_megapixels)
        self.jobs = JobManager()
        self.tags = Tags(self.library.catalog)
        self._index_lock = threading.Lock()
        self._watch_stop = threading.Event()
        self._watch_thread: threading.Thread | None = None
        self.watch_state: Any = None  # glimpse.watch.WatchState while watching

    @cached_property
    def text_encoder(self) -> TurnTakingEncoder:
        """The library's encoder, for texts: one caller at a time, in first-come turns of a few texts."""
        return TurnTakingEncoder(self.library.encoder)

    def warm_up(self) -> None:
        """Load the model now, so the first search does not pay for it."""
        _ = self.text_encoder

    def close(self) -> None:
        self.stop_watching()
        self.jobs.wait_idle(timeout=60)
        self.library.close()

    # -- watching ----------------------------------------------------------------------------------
    def start_watching(self) -> None:
        """Keep the library current with the server's roots in a background thread (``serve --watch``).

        Like an indexing job it writes through its own Library sharing the loaded encoder; it holds the writer
        lock only while a run indexes, so ``POST /api/index`` and a manual ``glimpse index`` still work between
        runs (and are told the library is busy during one)."""
        from glimpse.watch import WatchState, watch_library

        roots = self.roots()
        if not roots:
            raise UserInputError("--watch needs folders: start the server with --root DIR, or index some first")
        for root in roots:
            refuse_filesystem_root(root, "the server's roots", advice="give --root folders of images")
        self.watch_state = WatchState()

        def work() -> None:
            try:
                with Library.from_settings(self.settings, encoder=self.text_encoder) as lib:
                    watch_library(lib, roots, stop=self._watch_stop, state=self.watch_state,
                                  index=lambda chosen: lib.index(chosen, batch_size=self.index_batch_size,
                                                                 max_megapixels=self.max_megapixels))
            except Exception as exc:  # shown in /api/status; the server keeps serving what it has
                self.watch_state.errors.append(f"{type(exc).__name__}: {exc}")

        self._watch_thread = threading.Thread(target=work, name="glimpse-watch", daemon=True)
        self._watch_thread.start()

    def stop_watching(self) -> None:
        self._watch_stop.set()
        if self._watch_thread is not None:
            self._watch_thread.join(timeout=60)
            self._watch_thread = None

    def watch_status(self) -> dict[str, Any] | None:
        """What ``/api/status`` says about watching: None when not watching."""
        state = self.watch_state
        if state is None:
            return None
        last = state.last
        return {"watching": self._watch_thread is not None and self._watch_thread.is_alive(), "runs": state.runs,
                "errors": state.errors[-5:],
                "last": None if last is None else {"catch_up": last.catch_up, "changed": last.changed,
                                                   "seconds": round(last.seconds, 3), **last.report.to_dict()}}

    # -- roots and files ---------------------------------------------------------------------------
    def roots(self) -> list[str]:
        """Folders the server may serve and re-index: those given at start plus the library's roots."""
        known = set(self.configured_roots) | set(self.library.catalog.roots())
        return sorted(known)

    def record(self, file_id: int) -> tuple[FileRecord, str]:
        """An indexed image and its servable real path, or NotFoundError."""
        rec = self.library.catalog.files_by_id([file_id]).get(file_id)
        real = servable_path(rec.path, self.roots()) if rec is not None and rec.state == STATE_OK else None
        if rec is None or real is None:
            raise NotFoundError(f"no image with id {file_id} is available")
        return rec, real

    def item(self, item_id: int) -> tuple[FileRecord, str, float | None]:
        """An indexed image, or the video of a frame (by its item id) with the frame's time: its record, its
        servable real path, the time (None for an image); NotFoundError when not available."""
        item = self.library.catalog.items_by_id([item_id]).get(item_id)
        rec, real = self.record(item.file.id if item is not None else item_id)
        return rec, real, item.time if item is not None else None

    def describe(self, rec: FileRecord, lang: str, tags: dict[int, list[dict[str, Any]]] | None = None
                 ) -> dict[str, Any]:
        path = _printable(rec.path)
        data: dict[str, Any] = {
            "id": rec.id, "path": path, "name": os.path.basename(path), "folder": os.path.dirname(path),
            "width": rec.width, "height": rec.height, "format": rec.format, "size": rec.size,
            "thumbnail": f"/api/images/{rec.id}/thumbnail", "file": f"/api/images/{rec.id}/file",
            "tags": (tags if tags is not None else self.tags.for_ids([rec.id], lang)).get(rec.id, []),
            "kind": "video" if is_video_format(rec.format) else "photo",
        }
        meta = self.library.catalog.metadata_of([rec.id]).get(rec.id)
        if meta is not None:
            data["meta"] = meta.to_dict()
        if data["kind"] == "video":
            data["frames"] = [self._frame(rec.id, frame_id, t) for frame_id, t in
                              self.library.catalog.frames_of(rec.id, self.library.spec.key)]
        return data

    @staticmethod
    def _frame(file_id: int, frame_id: int, time: float, score: float | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"id": frame_id, "time": round(time, 3),
                                 "thumbnail": f"/api/images/{file_id}/thumbnail?t={time:.3f}"}
        if score is not None:
            frame["score"] = round(float(score), 6)
        return frame

    @staticmethod
    def media_type(rec: FileRecord, real: str) -> str:
        """The Content-Type of an indexed file: its video container's (by name) or its image format's."""
        if is_video_format(rec.format):
            import mimetypes

            return mimetypes.guess_type(real)[0] or "application/octet-stream"
        return f"image/{rec.format.lower()}" if rec.format else "application/octet-stream"

    def folders(self) -> list[dict[str, Any]]:
        """Folders holding indexed images, with counts, for the folder filter."""
        counts: dict[str, int] = {}
        for root in self.library.catalog.roots():
            for rec in self.library.catalog.files_under(root).values():
                if rec.state == STATE_OK:
                    folder = os.path.dirname(rec.path)
                    counts[folder] = counts.get(folder, 0) + 1
        return [{"folder": _printable(f), "count": n} for f, n in sorted(counts.items())]

    # -- query vectors -----------------------------------------------------------------------------
    def text_vector(self, query: str) -> np.ndarray:
        """``float32[d]`` of a text query. Every term is text: a client never names a server file."""
        from glimpse.query import QueryTerm, embed_terms, parse_query

        terms = [QueryTerm(t.weight, text=t.text if t.text is not None else str(t.image))
                 for t in parse_query(query)]
        return embed_terms(terms, self.text_encoder)

    def upload_vector(self, data: bytes) -> np.ndarray:
        """``float32[d]`` of an uploaded image (size-checked from its header before decoding)."""
        if not data:
            raise UserInputError("the uploaded file is empty; pick an image file")
        decoded = decode_image(data, min_side=self.library.spec.preprocess.min_side,
                               max_megapixels=self.max_megapixels)
        return self.library.encoder.encode_images([decoded.image])[0]

    def stored_vector(self, item_id: int) -> np.ndarray:
        """The stored vector of an indexed image, or of a video's frame (by its item id), if servable."""
        item = self.library.catalog.items_by_id([item_id]).get(item_id)
        self.record(item.file.id if item is not None else item_id)
        return self.library.image_vector(item_id)

    def classify(self, ids: list[int], labels: list[str], k: int) -> list[dict[str, Any]]:
        """Zero-shot labels of indexed images from their stored vectors (no re-encoding).

        At most ``MAX_CLASSIFY_LABELS`` labels of ``MAX_TEXT_CHARS`` characters each; their prompts are
        encoded in turns shared fairly with searches.
        """
        from glimpse.zeroshot import ZeroShotClassifier

        if not ids:
            raise UserInputError("give at least one image id in 'ids'")
        if len(labels) > MAX_CLASSIFY_LABELS:
            raise UserInputError(f"too many labels: {len(labels)}; at most {MAX_CLASSIFY_LABELS} per request, "
                                 "so split them across several requests")
        long = next((label for label in labels if len(label) > MAX_TEXT_CHARS), None)
        if long is not None:
            raise UserInputError(f"label {long[:40]!r}... has {len(long)} characters; at most {MAX_TEXT_CHARS}")
        vectors = np.stack([self.stored_vector(i) for i in ids])
        results = ZeroShotClassifier.build(self.text_encoder, labels).predict(vectors, k)
        return [{"id": i, "labels": r} for i, r in zip(ids, results, strict=True)]

    # -- searching ---------------------------------------------------------------------------------
    def servable(self) -> Callable[[str], bool]:
        """Whether a stored path may be served now (inside a root, symlinks resolved)."""
        roots = self.roots()
        return lambda path: servable_path(path, roots) is not None

    def search(self, vector: np.ndarray, *, k: int, offset: int = 0, min_score: float | None = None,
               folder: str | None = None, tags: list[str] | None = None, where: Any = None,
               kind: str | None = None, per_video: int = DEFAULT_PER_VIDEO) -> Page:
        """Hits ``offset .. offset+k`` of ``vector``, keeping only servable images matching the filters.

        Every filter is the library's: it widens its search until enough hits pass them and the servable
        check, so a page is full whenever that many servable matches exist.
        """
        check_page(k, offset)
        with self._index_lock:
            # One more than the page tells whether another page exists.
            hits = self.library.search_vector(vector, k + 1, offset=offset, accept=self.servable(),
                                              min_score=min_score, tags=tags or None, folder=folder or None,
                                              where=where, kind=kind, per_video=per_video)
        return Page(hits[:k], offset, len(hits) > k)

    def search_query(self, query: str, *, k: int, offset: int = 0, min_score: float | None = None,
                     folder: str | None = None, tags: list[str] | None = None, where: Any = None,
                     sort: str = "score", kind: str | None = None, per_video: int = DEFAULT_PER_VIDEO) -> Page:
        """Hits of a text query as the search box sends it: words for CLIP, ``text:"…"`` terms for the images'
        text (alone: a full-text search; with words: a filter on CLIP's ranking), and a single plain word or
        phrase also matched against the text and fused, as ``glimpse search`` does. Every term is text: a
        client never names a server file."""
        from glimpse.metafilter import check_sort
        from glimpse.ocr.text_index import split_text_terms
        from glimpse.query import parse_query

        check_page(k, offset)
        check_sort(sort)
        rest, text_query = split_text_terms(query)
        common = {"offset": offset, "accept": self.servable(), "tags": tags or None, "folder": folder or None,
                  "where": where, "kind": kind}
        if text_query is not None and not rest:
            with self._index_lock:
                hits = self.library.search_text(list(text_query.terms), k + 1, **common)
        else:
            words = [t.text for t in parse_query(rest) if t.text is not None and t.weight > 0]
            vector = self.text_vector(rest)
            with self._index_lock:
                hits = self.library.search_vector(
                    vector, k + 1, min_score=min_score, per_video=per_video,
                    text=list(text_query.terms) if text_query else None,
                    fuse=words[0] if len(words) == 1 and text_query is None else None, **common)
        page = Page(hits[:k], offset, len(hits) > k)
        return Page(self.library.sorted_hits(page.hits, sort), offset, page.more) if sort != "score" else page

    def text_of(self, file_id: int) -> dict[str, Any]:
        """The recognised lines of an indexed image (reading order, boxes in image pixels); NotFoundError when
        it is not available, ``{"lines": null}`` when its text was never read (``index --ocr``)."""
        self.record(file_id)
        lines = self.library.text_of(file_id)
        return {"id": file_id, "lines": None if lines is None else [line.to_dict() for line in lines]}

    def recent(self, *, k: int, offset: int = 0) -> Page:
        """The servable images ``offset .. offset+k`` among the most recently indexed, newest first."""
        check_page(k, offset)
        hits = self.library.recent(k + 1, offset, accept=self.servable())
        return Page(hits[:k], offset, len(hits) > k)

    def hit_dicts(self, page: Page, lang: str) -> list[dict[str, Any]]:
        records = self.library.catalog.files_by_id([h.id for h in page.hits])
        tags = self.tags.for_ids([h.id for h in page.hits], lang)
        out = []
        for hit in page.hits:
            data = self.describe(records[hit.id], lang, tags) if hit.id in records else hit.to_dict()
            data["score"] = round(float(hit.score), 6)
            data["match"] = hit.match
            if hit.snippet is not None:
                data["snippet"] = hit.snippet
            if hit.rank_score is not None:
                data["rank_score"] = round(float(hit.rank_score), 6)
            if hit.meta is not None:
                data["meta"] = hit.meta
            if hit.time is not None:  # a video hit: its best frames (not every frame of the video)
                data["time"] = round(hit.time, 3)
                data["thumbnail"] = f"/api/images/{hit.id}/thumbnail?t={hit.time:.3f}"
                data["frames"] = [self._frame(hit.id, frame_id, t, score) for t, score, frame_id in hit.frames]
            out.append(data)
        return out

    # -- indexing ----------------------------------------------------------------------------------
    def start_index(self, roots: list[str] | None) -> Job:
        """Start re-indexing ``roots`` (default: all known roots) in the background."""
        allowed = self.roots()
        if roots:
            chosen = [os.path.realpath(os.path.expanduser(r)) for r in roots]
            for root in chosen:
                refuse_filesystem_root(root, "roots")
            unknown = [r for r in chosen if r not in allowed]
            if unknown:
                raise UserInputError(
                    f"{unknown[0]} is not a root of this server; it may index only {allowed or 'no folders'} "
                    "(start it with --root DIR to add one)"
                )
        else:
            chosen = allowed
            for root in chosen:
                refuse_filesystem_root(root, "the server's roots", advice="name the folders to index in 'roots'")
        if not chosen:
            raise UserInputError("no folders to index: start the server with --root DIR, or run `glimpse index DIR`")
        return self.jobs.start(chosen, self._index_work(chosen))

    def _index_work(self, roots: list[str]) -> Callable[[Job], dict[str, Any]]:
        def work(job: Job) -> dict[str, Any]:
            # Its own Library (catalog connection + vector store) so the writer never mutates what the
            # request threads read. It borrows the loaded model rather than loading it twice (closing the
            # job's library leaves it open), and the texts the job encodes (IVF tuning's probes) take
            # turns with the searches'.
            with Library.from_settings(self.settings, encoder=self.text_encoder) as lib:
                report = lib.index(roots, batch_size=self.index_batch_size, max_megapixels=self.max_megapixels,
                                   progress=job)
            return report.to_dict()

        return work
