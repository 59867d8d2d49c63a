"""The SQLite catalog: the one source of truth of a library.

It holds the indexed roots, every file seen (with its state and, for failures, a one-line reason),
embeddings per model key, and an append-only change log. Vector indexes are derived from it: they
remember the last change id they applied and replay newer changes on open.

Paths are stored as BLOBs of their file-system bytes (``os.fsencode``): a file name that is not valid
UTF-8 is legal on Linux and must be indexable, and SQLite TEXT cannot hold it.

Concurrency: WAL mode, so readers (search, the server) never block the single writer (indexing).
Every indexing batch is written in one transaction, so a ``kill -9`` loses at most the batch in flight
and never leaves half of one behind.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from glimpse.errors import CatalogError, LibraryBusyError, ReadOnlyLibraryError
from glimpse.ocr.base import OcrLine
from glimpse.ocr.text_index import TRIGRAM_MIN, TextQuery, fts_phrase, line_score, normalize_text

if TYPE_CHECKING:  # the metadata modules load with the first metadata call (PIL's EXIF tables are not free)
    from glimpse.metadata import PhotoMetadata
    from glimpse.metafilter import MetadataFilter

SCHEMA_VERSION = 6
CATALOG_FILENAME = "catalog.sqlite3"

# Files are in one of these states. 'skipped' marks files that are not images (by content), so later
# runs do not read them again until they change.
STATE_OK = "ok"
STATE_ERROR = "error"
STATE_SKIPPED = "skipped"

# Stored vector formats: float16 halves the catalog at ~1e-3 precision (rankings practically unchanged).
VECTOR_DTYPES = {"float32": np.float32, "float16": np.float16}

OP_UPSERT = "upsert"  # an embedding of model_key was written for file_id
OP_DELETE = "delete"  # file_id is gone (all models)
# model_key of an upsert that changed only what a store may keep beside the vector (the path after a move,
# the tags after tagging): stores holding that metadata (Milvus) replay it, vector-only ones (FAISS) skip it.
METADATA_CHANGE = "#metadata"

_SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE roots (
    id INTEGER PRIMARY KEY,
    path BLOB UNIQUE NOT NULL,
    added_at REAL NOT NULL
);
-- AUTOINCREMENT: ids are never reused, so a vector index can never confuse a new file with a removed one.
CREATE TABLE files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path BLOB UNIQUE NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash TEXT,
    width INTEGER,
    height INTEGER,
    format TEXT,
    state TEXT NOT NULL CHECK (state IN ('ok', 'error', 'skipped')),
    error TEXT,
    indexed_at REAL NOT NULL
);
CREATE INDEX files_hash ON files (hash);
CREATE TABLE models (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    dim INTEGER NOT NULL,
    spec TEXT NOT NULL,
    added_at REAL NOT NULL
);
CREATE TABLE embeddings (
    model_key TEXT NOT NULL REFERENCES models (key),
    file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    dtype TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model_key, file_id)
) WITHOUT ROWID;
CREATE INDEX embeddings_file ON embeddings (file_id);
CREATE TABLE changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id INTEGER NOT NULL,
    model_key TEXT,
    op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
    at REAL NOT NULL
);
"""

# Migrations from version N to N+1, applied in order inside one transaction each.
_MIGRATIONS: dict[int, str] = {
    # 1 -> 2: tags. ``source`` is tagger + model key (e.g. "clip:<key>", "ram_plus:<key>"); ``tagged`` remembers
    # which content (hash) each source last tagged, so re-tagging touches only new and changed files.
    1: """
CREATE TABLE tags (
    file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    tag TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (file_id, source, tag)
) WITHOUT ROWID;
CREATE INDEX tags_tag ON tags (tag, file_id);
CREATE TABLE tagged (
    file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    source TEXT NOT NULL,
    hash TEXT,
    PRIMARY KEY (file_id, source)
) WITHOUT ROWID;
""",
    # 2 -> 3: the settings a failed (or skipped) file was tried under (glimpse version, --max-megapixels, …),
    # so a later run with other settings tries it again instead of keeping the old verdict forever.
    2: """
ALTER TABLE files ADD COLUMN tried_with TEXT;
""",
    # 3 -> 4: OCR. ``ocr_lines`` holds each file's recognised lines in reading order (``line`` from 0): the
    # text as recognised (shown) and normalised (``glimpse.ocr.text_index.normalize_text``: searched), the
    # confidence and the box (JSON, 4 [x, y] points in full-image pixels). ``ocr_done`` remembers which model
    # read which content (hash), like ``tagged``: OCR re-runs only when either changes; a file read with no
    # text has an ``ocr_done`` row and no lines; one the model failed on, a row with the one-line ``error``
    # (not retried until the content or the model changes, as a file's verdict under its ``tried_with``).
    # ``ocr_fts`` is an FTS5 trigram index over ``norm`` with ``ocr_lines`` as its external content; virtual
    # tables do not cascade, so triggers keep it in step with every insert and delete of a line (a file's
    # delete cascades to its lines, and so to the index).
    3: """
CREATE TABLE ocr_lines (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    line INTEGER NOT NULL,
    text TEXT NOT NULL,
    norm TEXT NOT NULL,
    confidence REAL NOT NULL,
    box TEXT NOT NULL,
    UNIQUE (file_id, line)
);
CREATE TABLE ocr_done (
    file_id INTEGER PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    hash TEXT,
    error TEXT,
    at REAL NOT NULL
);
CREATE VIRTUAL TABLE ocr_fts USING fts5 (norm, content = 'ocr_lines', content_rowid = 'id', tokenize = 'trigram');
CREATE TRIGGER ocr_lines_insert AFTER INSERT ON ocr_lines BEGIN
    INSERT INTO ocr_fts (rowid, norm) VALUES (new.id, new.norm);
END;
CREATE TRIGGER ocr_lines_delete AFTER DELETE ON ocr_lines BEGIN
    INSERT INTO ocr_fts (ocr_fts, rowid, norm) VALUES ('delete', old.id, old.norm);
END;
""",
    # 4 -> 5: capture metadata (``glimpse.metadata.PhotoMetadata``), read once per content ``hash``: ``taken`` is
    # the local wall-clock time as ISO text (sorts as text), ``taken_source`` 'exif' or 'mtime' (a stand-in);
    # ``camera`` is make + model lower-cased (``PhotoMetadata.camera``), the key of the --camera filter; ``cameras``
    # lists every camera name ever stored (a few dozen rows), so a filter finds its names without a scan.
    # A move keeps the row (the file id is kept); a changed file's row is re-read (its hash no longer matches).
    4: """
CREATE TABLE photo_meta (
    file_id INTEGER PRIMARY KEY REFERENCES files (id) ON DELETE CASCADE,
    hash TEXT,
    taken TEXT,
    utc_offset INTEGER,
    taken_source TEXT,
    latitude REAL,
    longitude REAL,
    make TEXT,
    model TEXT,
    lens TEXT,
    orientation INTEGER,
    camera TEXT
);
CREATE INDEX photo_meta_taken ON photo_meta (taken);
CREATE INDEX photo_meta_camera ON photo_meta (camera);
CREATE TABLE cameras (camera TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE INDEX photo_meta_place ON photo_meta (latitude, longitude);
""",
    # 5 -> 6: items under files. A photo is one searchable item whose id is its file id; a video is many, its
    # sampled ``frames`` (``t_ms``: milliseconds from the start). A frame's id comes from the same sequence as
    # the file ids (``Catalog._new_item_id``), so every vector store keys photos and frames alike and an id is
    # never reused. ``embeddings.file_id`` is therefore an *item* id: the table is rebuilt without its foreign
    # key to ``files`` (SQLite cannot drop one in place), and triggers do what the cascade did: a deleted file
    # or frame takes its vectors along, and a deleted frame is logged so the vector stores drop it too (a
    # video's frames go by cascade when the video is deleted or re-sampled). ``photo_meta.duration``: seconds,
    # for videos.
    5: """
CREATE TABLE frames (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    t_ms INTEGER NOT NULL,
    UNIQUE (file_id, t_ms)
);
CREATE TABLE embeddings_v6 (
    model_key TEXT NOT NULL REFERENCES models (key),
    file_id INTEGER NOT NULL,
    dtype TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model_key, file_id)
) WITHOUT ROWID;
INSERT INTO embeddings_v6 (model_key, file_id, dtype, vector) SELECT model_key, file_id, dtype, vector FROM embeddings;
DROP TABLE embeddings;
ALTER TABLE embeddings_v6 RENAME TO embeddings;
CREATE INDEX embeddings_file ON embeddings (file_id);
CREATE TRIGGER files_delete_vectors AFTER DELETE ON files BEGIN
    DELETE FROM embeddings WHERE file_id = old.id;
END;
CREATE TRIGGER frames_delete AFTER DELETE ON frames BEGIN
    DELETE FROM embeddings WHERE file_id = old.id;
    INSERT INTO changes (file_id, model_key, op, at)
        VALUES (old.id, NULL, 'delete', (julianday('now') - 2440587.5) * 86400.0);
END;
ALTER TABLE photo_meta ADD COLUMN duration REAL;
""",
}

# ``files.format`` of a video: this prefix + the codec of its video stream ("video/h264"); the one test of
# whether a file is a video (``is_video_format``).
VIDEO_FORMAT_PREFIX = "video/"


def is_video_format(fmt: str | None) -> bool:
    """Whether a ``files.format`` value names a video (its items are frames)."""
    return fmt is not None and fmt.startswith(VIDEO_FORMAT_PREFIX)


@dataclass(frozen=True)
class FileRecord:
    """One row of ``files``. ``path`` is the file-system path as ``str`` (surrogate-escaped if needed)."""

    id: int
    path: str
    size: int
    mtime_ns: int
    hash: str | None
    width: int | None
    height: int | None
    format: str | None
    state: str
    error: str | None
    tried_with: str | None = None  # for error/skipped rows: the settings that verdict was reached under

    @property
    def display_path(self) -> str:
        """The path with undecodable bytes shown as U+FFFD, safe to print or put in JSON."""
        return os.fsencode(self.path).decode("utf-8", "replace")


@dataclass(frozen=True)
class FileUpdate:
    """What the indexing pipeline learned about one file; written by ``Catalog.apply``.

    ``vector`` (float32[d]) is set for freshly encoded images; ``reuse_from`` names a file id whose
    embedding is copied (same content hash); ``move_from`` names a file id whose row takes this path.
    An ``ok`` update with none of these keeps the embeddings the file already has (e.g. only its
    mtime changed, the content hash did not).
    """

    path: str
    size: int
    mtime_ns: int
    state: str
    hash: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    error: str | None = None
    vector: np.ndarray | None = None
    reuse_from: int | None = None
    move_from: int | None = None
    tried_with: str | None = None  # set for error/skipped updates: the settings the file was tried under
    ocr: OcrResult | None = None  # freshly read text (replaces the file's stored lines)
    ocr_from: int | None = None  # copy the stored text of this file id (same content, same OCR model)
    # A video's sampled frames: ``(t_ms, float32[d] vector)`` in time order (they replace the frames this model
    # has of the file), or ``frames_from``: copy the frames of that video (same content) for this model.
    frames: tuple[tuple[int, np.ndarray], ...] | None = None
    frames_from: int | None = None
    # Capture metadata read from this content's header while it was decoded (``glimpse.metadata_index`` reads
    # the files that arrive without it).
    metadata: PhotoMetadata | None = None


@dataclass(frozen=True)
class ItemRecord:
    """A searchable item: a photo (``time`` None, ``id == file.id``) or a frame of the video ``file`` taken
    ``time`` seconds from its start."""

    id: int
    file: FileRecord
    time: float | None = None


@dataclass(frozen=True)
class OcrResult:
    """What one OCR model read in one file: ``lines`` in reading order (boxes in full-image pixels), or
    ``error``, the one-line reason it could not read it (then no lines)."""

    model_id: str
    lines: tuple[OcrLine, ...]
    error: str | None = None


@dataclass(frozen=True)
class TextMatch:
    """A file whose stored text matches a text query: ``score`` in (0, 1] (``text_index.line_score``, mean over
    the terms), ``line`` the best-matching line as recognised (the snippet), ``line_no`` its reading order."""

    file_id: int
    score: float
    line: str
    line_no: int


def path_key(path: str | os.PathLike[str]) -> bytes:
    """The catalog's representation of a path: its file-system bytes."""
    return os.fsencode(os.fspath(path))


def prefix_range(prefix: str) -> tuple[bytes, bytes]:
    """Byte range ``[lo, hi)`` of catalog paths strictly inside the directory ``prefix``."""
    lo = path_key(prefix).rstrip(b"/") + b"/"
    return lo, lo[:-1] + bytes([lo[-1] + 1])


def _row_to_record(row: sqlite3.Row | tuple) -> FileRecord:
    fid, path, size, mtime_ns, hsh, width, height, fmt, state, error, tried_with = row
    return FileRecord(fid, os.fsdecode(bytes(path)), size, mtime_ns, hsh, width, height, fmt, state, error, tried_with)


def _log_change(db: sqlite3.Connection, file_id: int, model_key: str | None, op: str, now: float) -> None:
    """Append to the change log (model_key None: the change concerns every model)."""
    db.execute("INSERT INTO changes (file_id, model_key, op, at) VALUES (?, ?, ?, ?)", (file_id, model_key, op, now))


_FILE_COLUMNS = "id, path, size, mtime_ns, hash, width, height, format, state, error, tried_with"


class Catalog:
    """A connection to a library's ``catalog.sqlite3`` (created and migrated on open).

    Thread-safe: one connection guarded by a lock. Open one Catalog per process.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        try:
            if readonly:
                self._db = self._connect_readonly()
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 30000")
            if not readonly:
                self._db.execute("PRAGMA journal_mode = WAL")
                # NORMAL in WAL mode is durable against a killed process (the case we guard against);
                # only an OS crash / power loss can drop the last transactions, never corrupt.
                self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            if not readonly:
                self._migrate()
            elif self._check_version() < SCHEMA_VERSION:
                raise CatalogError(
                    f"the catalog {self.path} has schema version {self._version()} and this glimpse needs "
                    f"{SCHEMA_VERSION}; it is read-only here, so it cannot be upgraded: open it once with write "
                    "access (e.g. `glimpse status`), then searching it read-only works"
                )
        except sqlite3.DatabaseError as exc:
            raise sqlite_failure(exc, self.path) from exc

    def _connect_readonly(self) -> sqlite3.Connection:
        """A read-only connection. A WAL database on a read-only folder cannot get its shared-memory file:
        then it is opened as immutable (nobody can be writing to a folder no one may write)."""
        try:
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False,
                                 isolation_level=None)
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return db
        except sqlite3.OperationalError:
            return sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True, check_same_thread=False,
                                   isolation_level=None)

    # -- schema ----------------------------------------------------------------------------------
    def _version(self) -> int:
        has_meta = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if not has_meta:
            return 0
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _check_version(self) -> int:
        version = self._version()
        if version > SCHEMA_VERSION:
            raise CatalogError(
                f"{self.path} has catalog schema version {version}, this glimpse knows up to "
                f"{SCHEMA_VERSION}; upgrade glimpse"
            )
        return version

    def _migrate(self) -> None:
        with self._lock, self.transaction():
            version = self._check_version()
            if version == 0:
                self._run_script(_SCHEMA_V1)
                self._set_meta("created_at", str(time.time()))
                version = 1  # a new catalog gets every migration too: one path to the current schema
                self._set_meta("schema_version", str(version))
            while version < SCHEMA_VERSION:
                if version == 3:
                    self._check_fts5_trigram()
                self._run_script(_MIGRATIONS[version])
                version += 1
                self._set_meta("schema_version", str(version))
            if self._db.execute("SELECT 1 FROM meta WHERE key = 'catalog_id'").fetchone() is None:
                # Written once, at creation (or the first writable open of an older catalog): derived vector
                # indexes record it, so an index left over from a deleted catalog is never reused with a new one.
                self._set_meta("catalog_id", uuid.uuid4().hex)

    def _check_fts5_trigram(self) -> None:
        """OCR's full-text index needs SQLite's FTS5 with the trigram tokenizer (SQLite ≥ 3.34)."""
        try:
            self._db.execute("CREATE VIRTUAL TABLE temp.glimpse_fts_probe USING fts5 (x, tokenize = 'trigram')")
            self._db.execute("DROP TABLE temp.glimpse_fts_probe")
        except sqlite3.OperationalError as exc:
            raise CatalogError(
                f"the SQLite of this Python ({sqlite3.sqlite_version}) lacks FTS5 with the trigram tokenizer "
                f"({exc}), which the catalog's text index needs: use a Python whose SQLite is 3.34 or newer, "
                "built with FTS5"
            ) from exc

    def _run_script(self, script: str) -> None:
        # executescript() would COMMIT the open transaction; run statement by statement inside it.
        # Statements are cut where SQLite says one is complete (a trigger body holds ';' of its own).
        statement = ""
        for line in script.splitlines():
            if line.lstrip().startswith("--"):
                continue
            statement += line + "\n"
            if sqlite3.complete_statement(statement):
                self._db.execute(statement)
                statement = ""
        if statement.strip():
            self._db.execute(statement)

    @property
    def catalog_id(self) -> str | None:
        """A random id made when this catalog was created; None only for an old catalog opened read-only."""
        return self.get_meta("catalog_id")

    @property
    def schema_version(self) -> int:
        with self._lock:
            return self._version()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: everything inside commits together or not at all."""
        with self._lock:
            if self._db.in_transaction:  # nested use joins the outer transaction
                yield self._db
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
                    self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- meta --------------------------------------------------------------------------------------
    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @property
    def vector_dtype(self) -> str:
        """How new vectors are stored: ``float32`` (default) or ``float16``."""
        return self.get_meta("vector_dtype", "float32") or "float32"

    @vector_dtype.setter
    def vector_dtype(self, value: str) -> None:
        if value not in VECTOR_DTYPES:
            raise CatalogError(f"vector dtype must be one of {sorted(VECTOR_DTYPES)}, got {value!r}")
        self.set_meta("vector_dtype", value)

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self._set_meta(key, value)

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    # -- roots -------------------------------------------------------------------------------------
    def add_root(self, path: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO roots (path, added_at) VALUES (?, ?)", (path_key(path), time.time())
            )

    def remove_root(self, path: str) -> bool:
        with self.transaction() as db:
            return db.execute("DELETE FROM roots WHERE path = ?", (path_key(path),)).rowcount > 0

    def roots(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT path FROM roots ORDER BY path").fetchall()
        return [os.fsdecode(bytes(r[0])) for r in rows]

    # -- models ------------------------------------------------------------------------------------
    def register_model(self, key: str, name: str, dim: int, spec: dict) -> None:
        """Record a model key (idempotent). A key bound to another dimension is refused."""
        with self.transaction() as db:
            row = db.execute("SELECT dim FROM models WHERE key = ?", (key,)).fetchone()
            if row is not None:
                if row[0] != dim:
                    raise CatalogError(
                        f"model key {key} is recorded with dimension {row[0]} but the model now gives {dim}; "
                        "the model files changed under the same key — re-export or rename the model"
                    )
                return
            db.execute(
                "INSERT INTO models (key, name, dim, spec, added_at) VALUES (?, ?, ?, ?, ?)",
                (key, name, dim, json.dumps(spec, ensure_ascii=False), time.time()),
            )

    def models(self) -> list[dict]:
        """Registered models with their embedding counts, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT m.key, m.name, m.dim, (SELECT COUNT(*) FROM embeddings e WHERE e.model_key = m.key) "
                "FROM models m ORDER BY m.added_at DESC"
            ).fetchall()
        return [{"key": k, "name": n, "dim": d, "embeddings": c} for k, n, d, c in rows]

    def has_embeddings(self) -> bool:
        """Whether any vector of any model is stored (one index probe; ``models()`` counts them all)."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM embeddings LIMIT 1").fetchone() is not None

    def model_specs(self) -> dict[str, dict]:
        """``{model key: the spec dict it was registered with}`` (what a library knows of a model whose files
        may have moved since)."""
        with self._lock:
            return {k: json.loads(spec) for k, spec in self._db.execute("SELECT key, spec FROM models")}

    # -- files -------------------------------------------------------------------------------------
    def files_under(self, root: str) -> dict[str, FileRecord]:
        """All file rows whose path lies inside directory ``root``, keyed by path."""
        lo, hi = prefix_range(root)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE path >= ? AND path < ?", (lo, hi)
            ).fetchall()
        records = (_row_to_record(r) for r in rows)
        return {rec.path: rec for rec in records}

    def ids_under(self, prefix: str) -> set[int]:
        """Ids of the files inside directory ``prefix`` (a range scan of the path index; no paths are loaded)."""
        lo, hi = prefix_range(prefix)
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT id FROM files WHERE path >= ? AND path < ?", (lo, hi))}

    def holds_images(self, prefix: str) -> bool:
        """Whether any image (indexed or failed, not a skipped non-image) is ``prefix`` or lies inside it."""
        lo, hi = prefix_range(prefix)
        with self._lock:
            return self._db.execute(
                "SELECT 1 FROM files WHERE ((path >= ? AND path < ?) OR path = ?) AND state != 'skipped' LIMIT 1",
                (lo, hi, path_key(prefix)),
            ).fetchone() is not None

    def file_by_path(self, path: str) -> FileRecord | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE path = ?", (path_key(path),)
            ).fetchone()
        return _row_to_record(row) if row else None

    def files_by_id(self, ids: Iterable[int]) -> dict[int, FileRecord]:
        ids = [int(i) for i in ids]
        out: dict[int, FileRecord] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for row in self._db.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE id IN ({marks})", chunk):
                    rec = _row_to_record(row)
                    out[rec.id] = rec
        return out

    def indexed_files(self, *, videos: bool = True) -> list[FileRecord]:
        """Every readable indexed image (state ok), and video unless ``videos`` is False, in id order."""
        photos_only = "" if videos else f" AND COALESCE(format, '') NOT LIKE '{VIDEO_FORMAT_PREFIX}%'"
        with self._lock:
            rows = self._db.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE state = 'ok'{photos_only} ORDER BY id"
                                    ).fetchall()
        return [_row_to_record(r) for r in rows]

    def recent_files(self, model_key: str, limit: int, offset: int = 0) -> list[FileRecord]:
        """Readable images (and videos with frames) with vectors of ``model_key``, most recently indexed first
        (then highest id)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join('f.' + c.strip() for c in _FILE_COLUMNS.split(','))} FROM files f "
                "WHERE f.state = 'ok' AND (EXISTS (SELECT 1 FROM embeddings e WHERE e.file_id = f.id AND "
                "e.model_key = ?) OR EXISTS (SELECT 1 FROM frames fr JOIN embeddings e ON e.file_id = fr.id AND "
                "e.model_key = ? WHERE fr.file_id = f.id)) ORDER BY f.indexed_at DESC, f.id DESC LIMIT ? OFFSET ?",
                (model_key, model_key, int(limit), int(offset)),
            ).fetchall()
        return [_row_to_record(r) for r in rows]

    def embedded_ids_by_hash(self, content_hashes: Iterable[str], model_key: str) -> dict[str, int]:
        """``{content hash: id of a file with that content holding a vector of model_key}`` for the hashes
        some indexed file has (one id per hash)."""
        wanted = sorted(set(content_hashes))
        found: dict[str, int] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for digest, file_id in self._db.execute(
                    "SELECT f.hash, MIN(f.id) FROM files f JOIN embeddings e ON e.file_id = f.id AND e.model_key = ? "
                    f"WHERE f.state = 'ok' AND f.hash IN ({marks}) GROUP BY f.hash",
                    [model_key, *chunk],
                ):
                    found[digest] = int(file_id)
        return found

    def errors(self, limit: int | None = None) -> list[FileRecord]:
        sql = f"SELECT {_FILE_COLUMNS} FROM files WHERE state = 'error' ORDER BY path"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            return [_row_to_record(r) for r in self._db.execute(sql)]

    def counts(self) -> dict[str, int]:
        """Number of files per state."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall()
        out = {STATE_OK: 0, STATE_ERROR: 0, STATE_SKIPPED: 0}
        out.update(dict(rows))
        return out

    def reusable_embedding(self, content_hash: str, model_key: str) -> int | None:
        """Id of a file with this content hash that already has an embedding of ``model_key``."""
        with self._lock:
            row = self._db.execute(
                "SELECT f.id FROM files f JOIN embeddings e ON e.file_id = f.id AND e.model_key = ? "
                "WHERE f.hash = ? LIMIT 1",
                (model_key, content_hash),
            ).fetchone()
        return row[0] if row else None

    # -- writes ------------------------------------------------------------------------------------
    def apply(self, updates: Sequence[FileUpdate], model_key: str) -> list[int]:
        """Write one batch of pipeline results in a single transaction; returns the file ids."""
        now = time.time()
        ids: list[int] = []
        dtype = self.vector_dtype
        with self.transaction() as db:
            for up in updates:
                key = path_key(up.path)
                if up.move_from is not None:
                    # A moved file keeps its id (and so its embeddings and its place in every index).
                    stale = db.execute(
                        "SELECT id FROM files WHERE path = ? AND id != ?", (key, up.move_from)
                    ).fetchone()
                    if stale is not None:
                        db.execute("DELETE FROM files WHERE id = ?", (stale[0],))
                        _log_change(db, stale[0], None, OP_DELETE, now)
                    db.execute("UPDATE files SET path = ? WHERE id = ?", (key, up.move_from))
                    _log_change(db, up.move_from, METADATA_CHANGE, OP_UPSERT, now)
                    frames = db.execute("SELECT id FROM frames WHERE file_id = ?", (up.move_from,)).fetchall()
                    for (frame_id,) in frames:  # a store keeping paths keeps the frames' too
                        _log_change(db, frame_id, METADATA_CHANGE, OP_UPSERT, now)
                before = db.execute("SELECT hash FROM files WHERE path = ?", (key,)).fetchone()
                tried_with = up.tried_with if up.state != STATE_OK else None
                row = (key, up.size, up.mtime_ns, up.hash, up.width, up.height, up.format, up.state,
                       up.error, tried_with, now)
                file_id = db.execute(
                    "INSERT INTO files (path, size, mtime_ns, hash, width, height, format, state, error, "
                    "tried_with, indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
                    "hash = excluded.hash, width = excluded.width, height = excluded.height, "
                    "format = excluded.format, state = excluded.state, error = excluded.error, "
                    "tried_with = excluded.tried_with, indexed_at = excluded.indexed_at RETURNING id",
                    row,
                ).fetchone()[0]
                ids.append(file_id)
                changed = before is not None and before[0] != up.hash
                if up.state != STATE_OK or changed:
                    # Text read from other (or no longer readable) content describes nothing that is there.
                    self._drop_ocr(db, file_id)
                if up.state == STATE_OK and (up.ocr is not None or up.ocr_from is not None):
                    self._put_ocr(db, file_id, up.hash, now, result=up.ocr, copy_from=up.ocr_from)
                if up.state == STATE_OK and up.metadata is not None:
                    self._write_metadata(db, [(file_id, up.hash, up.metadata)])
                if up.move_from is not None:
                    continue
                if up.state != STATE_OK or changed:
                    # A video no longer readable, or re-sampled from new content: its frames go (the trigger
                    # takes their vectors and logs them for the stores).
                    db.execute("DELETE FROM frames WHERE file_id = ?", (file_id,))
                if up.state != STATE_OK:
                    if db.execute("DELETE FROM embeddings WHERE file_id = ?", (file_id,)).rowcount:
                        # Not (or no longer) a readable image: its stale vectors of every model are gone.
                        _log_change(db, file_id, None, OP_DELETE, now)
                    continue
                if changed and db.execute(
                    "DELETE FROM embeddings WHERE file_id = ? AND model_key != ?", (file_id, model_key)
                ).rowcount:
                    # The content changed: other models' vectors describe the old content. (Unchanged
                    # content keeps every model's vectors side by side.)
                    _log_change(db, file_id, None, OP_DELETE, now)
                if up.vector is not None or up.reuse_from is not None:
                    self._put_embedding(db, file_id, model_key, now, vector=up.vector, copy_from=up.reuse_from,
                                        dtype=dtype)
                if up.frames is not None or up.frames_from is not None:
                    self._put_frames(db, file_id, model_key, now, up, dtype)
        return ids

    @staticmethod
    def _new_item_id(db: sqlite3.Connection) -> int:
        """An id from the files' AUTOINCREMENT sequence that no file will take (a frame's id). The video's own row
        is inserted first in the same transaction, so the sequence row exists."""
        return int(db.execute("UPDATE sqlite_sequence SET seq = seq + 1 WHERE name = 'files' RETURNING seq"
                              ).fetchone()[0])

    def _put_frames(self, db: sqlite3.Connection, file_id: int, model_key: str, now: float, up: FileUpdate,
                    dtype: str) -> None:
        """Make ``model_key``'s frames of video ``file_id`` those of ``up`` (sampled, or copied from ``frames_from``).

        A frame at a time another model already sampled keeps its id (one item, a vector per model); this model's
        vectors of frames no longer sampled go, and so do frames left with no vector."""
        if up.frames is not None:
            wanted = [(int(t), np.ascontiguousarray(v, dtype=VECTOR_DTYPES[dtype]).tobytes(), dtype)
                      for t, v in up.frames]
        else:
            wanted = db.execute(
                "SELECT fr.t_ms, e.vector, e.dtype FROM frames fr JOIN embeddings e ON e.file_id = fr.id "
                "AND e.model_key = ? WHERE fr.file_id = ? ORDER BY fr.t_ms", (model_key, up.frames_from)).fetchall()
        have = dict(db.execute("SELECT t_ms, id FROM frames WHERE file_id = ?", (file_id,)).fetchall())
        keep: set[int] = set()
        for t_ms, blob, kind in wanted:
            frame_id = have.get(t_ms)
            if frame_id is None:
                frame_id = self._new_item_id(db)
                db.execute("INSERT INTO frames (id, file_id, t_ms) VALUES (?, ?, ?)", (frame_id, file_id, t_ms))
            keep.add(frame_id)
            db.execute("INSERT OR REPLACE INTO embeddings (model_key, file_id, dtype, vector) VALUES (?, ?, ?, ?)",
                       (model_key, frame_id, kind, blob))
            _log_change(db, frame_id, model_key, OP_UPSERT, now)
        for frame_id in set(have.values()) - keep:
            if db.execute("DELETE FROM embeddings WHERE model_key = ? AND file_id = ?", (model_key, frame_id)).rowcount:
                _log_change(db, frame_id, model_key, OP_DELETE, now)
        db.execute("DELETE FROM frames WHERE file_id = ? AND NOT EXISTS "
                   "(SELECT 1 FROM embeddings e WHERE e.file_id = frames.id)", (file_id,))

    # -- items (photos and video frames) -------------------------------------------------------------
    def has_frames(self) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM frames LIMIT 1").fetchone() is not None

    def items_by_id(self, ids: Iterable[int]) -> dict[int, ItemRecord]:
        """``{item id: ItemRecord}`` for the ids that are photos (file ids) or video frames."""
        ids = [int(i) for i in ids]
        files = self.files_by_id(ids)
        out = {i: ItemRecord(i, rec) for i, rec in files.items()}
        rest = [i for i in ids if i not in files]
        if not rest:
            return out
        owners: dict[int, tuple[int, int]] = {}
        with self._lock:
            for start in range(0, len(rest), 500):
                chunk = rest[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for frame_id, file_id, t_ms in self._db.execute(
                        f"SELECT id, file_id, t_ms FROM frames WHERE id IN ({marks})", chunk):
                    owners[int(frame_id)] = (int(file_id), int(t_ms))
        videos = self.files_by_id({f for f, _ in owners.values()})
        for frame_id, (file_id, t_ms) in owners.items():
            if file_id in videos:
                out[frame_id] = ItemRecord(frame_id, videos[file_id], t_ms / 1000.0)
        return out

    def with_frames(self, file_ids: Iterable[int]) -> set[int]:
        """``file_ids`` and the ids of the frames of those that are videos: the items of these files."""
        ids = {int(i) for i in file_ids}
        if not ids or not self.has_frames():
            return ids
        wanted = sorted(ids)
        out = set(ids)
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                marks = ",".join("?" * len(chunk))
                out.update(r[0] for r in self._db.execute(f"SELECT id FROM frames WHERE file_id IN ({marks})", chunk))
        return out

    def frame_ids(self) -> set[int]:
        """Ids of every video frame (items that are not photos)."""
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT id FROM frames")}

    def frames_of(self, file_id: int, model_key: str) -> list[tuple[int, float]]:
        """``[(frame id, seconds)]`` of video ``file_id`` holding a vector of ``model_key``, in time order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT fr.id, fr.t_ms FROM frames fr JOIN embeddings e ON e.file_id = fr.id AND e.model_key = ? "
                "WHERE fr.file_id = ? ORDER BY fr.t_ms", (model_key, int(file_id))).fetchall()
        return [(int(i), t / 1000.0) for i, t in rows]

    def files_with_vectors(self, model_key: str) -> set[int]:
        """Ids of the files holding vectors of ``model_key``: photos with theirs, videos with frames'."""
        with self._lock:
            photos = {r[0] for r in self._db.execute("SELECT file_id FROM embeddings WHERE model_key = ?",
                                                     (model_key,))}
            videos = {r[0] for r in self._db.execute(
                "SELECT DISTINCT fr.file_id FROM frames fr JOIN embeddings e ON e.file_id = fr.id AND e.model_key = ?",
                (model_key,))}
        # ``photos`` holds the frames' ids too; harmless: no frame id is ever a file id.
        return photos | videos

    def video_counts(self) -> dict[str, int]:
        """``{"videos": readable videos, "frames": their sampled frames}``."""
        with self._lock:
            videos = self._db.execute(f"SELECT COUNT(*) FROM files WHERE state = 'ok' AND format LIKE "
                                      f"'{VIDEO_FORMAT_PREFIX}%'").fetchone()[0]
            frames = self._db.execute("SELECT COUNT(*) FROM frames").fetchone()[0]
        return {"videos": int(videos), "frames": int(frames)}

    def count_covered_files(self, model_key: str) -> int:
        """How many files hold vectors of ``model_key`` (a video counts once, however many frames it has)."""
        vectors = self.count_embeddings(model_key)
        if not self.has_frames():
            return vectors
        with self._lock:
            frames, videos = self._db.execute(
                "SELECT COUNT(*), COUNT(DISTINCT fr.file_id) FROM frames fr JOIN embeddings e ON e.file_id = fr.id "
                "AND e.model_key = ?", (model_key,)).fetchone()
        return vectors - int(frames) + int(videos)

    def video_with_frames(self, content_hash: str, model_key: str) -> int | None:
        """Id of a video with this content hash whose frames hold vectors of ``model_key`` (to copy them)."""
        with self._lock:
            row = self._db.execute(
                "SELECT f.id FROM files f JOIN frames fr ON fr.file_id = f.id JOIN embeddings e ON e.file_id = fr.id "
                "AND e.model_key = ? WHERE f.hash = ? AND f.state = 'ok' LIMIT 1", (model_key, content_hash)
            ).fetchone()
        return int(row[0]) if row else None

    @staticmethod
    def _put_embedding(db: sqlite3.Connection, file_id: int, model_key: str, now: float, *,
                       vector: np.ndarray | None = None, copy_from: int | None = None,
                       dtype: str = "float32") -> None:
        """Store a new vector (as ``dtype``), or copy the vector of ``copy_from`` (a file with the same content)."""
        if vector is not None:
            blob = np.ascontiguousarray(vector, dtype=VECTOR_DTYPES[dtype]).tobytes()
            db.execute(
                "INSERT OR REPLACE INTO embeddings (model_key, file_id, dtype, vector) VALUES (?, ?, ?, ?)",
                (model_key, file_id, dtype, blob),
            )
        else:
            db.execute(
                "INSERT OR REPLACE INTO embeddings (model_key, file_id, dtype, vector) "
                "SELECT model_key, ?, dtype, vector FROM embeddings WHERE file_id = ? AND model_key = ?",
                (file_id, copy_from, model_key),
            )
        _log_change(db, file_id, model_key, OP_UPSERT, now)

    @staticmethod
    def _drop_ocr(db: sqlite3.Connection, file_id: int) -> None:
        # Lines first, one by one through the trigger that removes them from the FTS index.
        db.execute("DELETE FROM ocr_lines WHERE file_id = ?", (file_id,))
        db.execute("DELETE FROM ocr_done WHERE file_id = ?", (file_id,))

    @staticmethod
    def _put_ocr(db: sqlite3.Connection, file_id: int, content_hash: str | None, now: float, *,
                 result: OcrResult | None = None, copy_from: int | None = None) -> None:
        """Replace the text of ``file_id`` with ``result``, or with the stored text of ``copy_from``."""
        Catalog._drop_ocr(db, file_id)
        if result is not None:
            db.executemany(
                "INSERT INTO ocr_lines (file_id, line, text, norm, confidence, box) VALUES (?, ?, ?, ?, ?, ?)",
                [(file_id, n, line.text, normalize_text(line.text), float(line.confidence),
                  json.dumps([[round(float(x), 2), round(float(y), 2)] for x, y in line.box]))
                 for n, line in enumerate(result.lines)])
            db.execute("INSERT INTO ocr_done (file_id, model_id, hash, error, at) VALUES (?, ?, ?, ?, ?)",
                       (file_id, result.model_id, content_hash, result.error, now))
        else:
            db.execute("INSERT INTO ocr_lines (file_id, line, text, norm, confidence, box) "
                       "SELECT ?, line, text, norm, confidence, box FROM ocr_lines WHERE file_id = ? ORDER BY line",
                       (file_id, copy_from))
            db.execute("INSERT INTO ocr_done (file_id, model_id, hash, error, at) "
                       "SELECT ?, model_id, ?, error, ? FROM ocr_done WHERE file_id = ?",
                       (file_id, content_hash, now, copy_from))

    def delete_files(self, ids: Iterable[int]) -> int:
        """Forget files (rows, embeddings) and log the deletions; returns how many were removed."""
        ids = [int(i) for i in ids]
        now = time.time()
        removed = 0
        with self.transaction() as db:
            for file_id in ids:
                if db.execute("DELETE FROM files WHERE id = ?", (file_id,)).rowcount:
                    removed += 1
                    _log_change(db, file_id, None, OP_DELETE, now)
        return removed

    def delete_under(self, prefix: str) -> int:
        """Forget every file inside directory ``prefix`` or equal to it."""
        lo, hi = prefix_range(prefix)
        with self._lock:
            ids = [
                r[0]
                for r in self._db.execute(
                    "SELECT id FROM files WHERE (path >= ? AND path < ?) OR path = ?", (lo, hi, path_key(prefix))
                )
            ]
        return self.delete_files(ids)

    # -- embeddings and the change log --------------------------------------------------------------
    def last_change(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(id) FROM changes").fetchone()
        return int(row[0] or 0)

    def changed_since(self, change_id: int, model_key: str, *, metadata: bool = False) -> tuple[int, set[int]]:
        """File ids touched (for ``model_key`` or all models) after ``change_id``, and the newest id.

        ``metadata``: also the ids whose path or tags changed (``METADATA_CHANGE``), for stores that keep them.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT id, file_id FROM changes WHERE id > ? AND (model_key IS NULL OR model_key = ? "
                "OR (? AND model_key = ?))",
                (change_id, model_key, metadata, METADATA_CHANGE),
            ).fetchall()
            last = self._db.execute("SELECT MAX(id) FROM changes").fetchone()[0] or 0
        return int(last), {r[1] for r in rows}

    def embeddings(
        self, model_key: str, ids: Iterable[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stored vectors of ``model_key``: ``(int64[n] ids, float32[n, d] vectors)``, ids ascending."""
        with self._lock:
            if ids is None:
                rows = self._db.execute(
                    "SELECT file_id, vector, dtype FROM embeddings WHERE model_key = ? ORDER BY file_id", (model_key,)
                ).fetchall()
            else:
                wanted = sorted(int(i) for i in ids)
                rows = []
                for start in range(0, len(wanted), 500):
                    chunk = wanted[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    rows += self._db.execute(
                        f"SELECT file_id, vector, dtype FROM embeddings WHERE model_key = ? AND file_id IN ({marks}) "
                        "ORDER BY file_id",
                        [model_key, *chunk],
                    ).fetchall()
            dim_row = self._db.execute("SELECT dim FROM models WHERE key = ?", (model_key,)).fetchone()
        dim = dim_row[0] if dim_row else 0
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, dim), dtype=np.float32)
        id_arr = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vectors = np.empty((len(rows), dim), dtype=np.float32)
        for dtype in {r[2] for r in rows}:  # usually one; a library may switch dtype between runs
            picked = [i for i, r in enumerate(rows) if r[2] == dtype]
            blob = b"".join(rows[i][1] for i in picked)
            vectors[picked] = np.frombuffer(blob, dtype=VECTOR_DTYPES[dtype]).reshape(len(picked), dim)
        return id_arr, vectors

    def count_embeddings(self, model_key: str) -> int:
        # Counted in embeddings_file, which holds (file_id, model_key) only: the table's rows carry the vectors,
        # and scanning them read the whole table (3.5 s CPU at 1M vectors, 130 ms this way; 40 ms -> 1 ms at 10k).
        with self._lock:
            return int(self._db.execute(
                "SELECT COUNT(*) FROM embeddings INDEXED BY embeddings_file WHERE model_key = ?", (model_key,)
            ).fetchone()[0])

    # -- tags ----------------------------------------------------------------------------------------
    def files_to_tag(self, source: str, *, videos: bool = False) -> list[FileRecord]:
        """Readable photos (and videos, with ``videos``: a tagger of stored vectors tags them by their frames)
        that ``source`` has not tagged at their current content hash."""
        photos_only = "" if videos else f"AND COALESCE(f.format, '') NOT LIKE '{VIDEO_FORMAT_PREFIX}%' "
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join('f.' + c.strip() for c in _FILE_COLUMNS.split(','))} FROM files f "
                "LEFT JOIN tagged t ON t.file_id = f.id AND t.source = ? "
                f"WHERE f.state = 'ok' AND (t.file_id IS NULL OR t.hash IS NOT f.hash) {photos_only}ORDER BY f.id",
                (source,),
            ).fetchall()
        return [_row_to_record(r) for r in rows]

    def put_tags(self, results: Sequence[tuple[int, str | None, Sequence[tuple[str, float]]]], source: str) -> None:
        """Replace ``source``'s tags of each ``(file_id, content hash, [(tag, score)])`` in one transaction."""
        now = time.time()
        with self.transaction() as db:
            for file_id, content_hash, tags in results:
                db.execute("DELETE FROM tags WHERE file_id = ? AND source = ?", (file_id, source))
                db.executemany("INSERT OR REPLACE INTO tags (file_id, source, tag, score) VALUES (?, ?, ?, ?)",
                               [(file_id, source, tag, float(score)) for tag, score in tags])
                db.execute("INSERT OR REPLACE INTO tagged (file_id, source, hash) VALUES (?, ?, ?)",
                           (file_id, source, content_hash))
                _log_change(db, file_id, METADATA_CHANGE, OP_UPSERT, now)
                for (frame_id,) in db.execute("SELECT id FROM frames WHERE file_id = ?", (file_id,)).fetchall():
                    _log_change(db, frame_id, METADATA_CHANGE, OP_UPSERT, now)  # a video's rows carry its tags

    def ids_with_tags(self, tags: Sequence[str]) -> set[int]:
        """Ids of files carrying every one of ``tags`` (any source)."""
        ids: set[int] | None = None
        with self._lock:
            for tag in tags:
                rows = self._db.execute("SELECT file_id FROM tags WHERE tag = ? COLLATE NOCASE", (tag,))
                found = {r[0] for r in rows}
                ids = found if ids is None else ids & found
        return ids or set()

    def unknown_tags(self, tags: Sequence[str]) -> list[str]:
        """Those of ``tags`` that no file carries (compared ASCII case-insensitively, as the tag filters do)."""
        with self._lock:
            return [t for t in dict.fromkeys(tags)
                    if self._db.execute("SELECT 1 FROM tags WHERE tag = ? COLLATE NOCASE LIMIT 1", (t,)).fetchone()
                    is None]

    def ids_with_any_tag(self, tags: Sequence[str]) -> set[int]:
        """Ids of files carrying at least one of ``tags`` (any source)."""
        with self._lock:
            return {r[0] for tag in tags
                    for r in self._db.execute("SELECT file_id FROM tags WHERE tag = ? COLLATE NOCASE", (tag,))}

    def tags_of(self, ids: Iterable[int]) -> dict[int, list[tuple[str, float]]]:
        """``{file_id: [(tag, best score over sources)]}``, best first."""
        ids = [int(i) for i in ids]
        out: dict[int, list[tuple[str, float]]] = {}
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for fid, tag, score in self._db.execute(
                    f"SELECT file_id, tag, MAX(score) FROM tags WHERE file_id IN ({marks}) GROUP BY file_id, tag "
                    "ORDER BY file_id, MAX(score) DESC", chunk):
                    out.setdefault(fid, []).append((tag, float(score)))
        return out

    def tag_counts(self, limit: int | None = None) -> list[tuple[str, int]]:
        """Facets: ``(tag, number of files)``, most frequent first."""
        sql = "SELECT tag, COUNT(DISTINCT file_id) AS n FROM tags GROUP BY tag ORDER BY n DESC, tag"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            return [(t, int(n)) for t, n in self._db.execute(sql)]

    # -- OCR text ----------------------------------------------------------------------------------
    def ocr_fresh_ids(self, model_id: str) -> set[int]:
        """Ids of readable files whose current content ``model_id`` has read (or failed on: not retried)."""
        with self._lock:
            return {r[0] for r in self._db.execute(
                "SELECT d.file_id FROM ocr_done d JOIN files f ON f.id = d.file_id "
                "WHERE d.model_id = ? AND d.hash IS f.hash AND f.state = 'ok'", (model_id,))}

    def ocr_sources(self, model_id: str) -> dict[str, int]:
        """``{content hash: id of a file whose text model_id read from that content}`` (one id per hash)."""
        with self._lock:
            return {h: int(i) for h, i in self._db.execute(
                "SELECT f.hash, MIN(f.id) FROM ocr_done d JOIN files f ON f.id = d.file_id "
                "WHERE d.model_id = ? AND d.hash IS f.hash AND f.state = 'ok' AND f.hash IS NOT NULL "
                "AND d.error IS NULL GROUP BY f.hash",
                (model_id,))}

    def ocr_source(self, content_hash: str, model_id: str) -> int | None:
        """Id of a file whose text ``model_id`` read from the content ``content_hash`` (a hash look-up)."""
        with self._lock:
            row = self._db.execute(
                "SELECT f.id FROM files f JOIN ocr_done d ON d.file_id = f.id WHERE f.hash = ? AND f.state = 'ok' "
                "AND d.model_id = ? AND d.hash = f.hash AND d.error IS NULL ORDER BY f.id LIMIT 1",
                (content_hash, model_id)).fetchone()
        return int(row[0]) if row else None

    def ocr_text(self, file_id: int) -> tuple[str, str | None, list[OcrLine]] | None:
        """``(model id, content hash it was read from, lines in reading order)`` of ``file_id``; None when
        it was never read or the model failed on it (an image read with no text has an empty list)."""
        with self._lock:
            done = self._db.execute("SELECT model_id, hash, error FROM ocr_done WHERE file_id = ?",
                                    (file_id,)).fetchone()
            if done is None or done[2] is not None:
                return None
            rows = self._db.execute(
                "SELECT text, confidence, box FROM ocr_lines WHERE file_id = ? ORDER BY line", (file_id,)).fetchall()
        lines = [OcrLine(text, float(conf), tuple((float(x), float(y)) for x, y in json.loads(box)))  # type: ignore[arg-type]
                 for text, conf, box in rows]
        return done[0], done[1], lines

    def has_text(self, *, lines: bool = False) -> bool:
        """Whether any file was read by OCR (``lines``: any line was found); index look-ups, for each search."""
        table = "ocr_lines" if lines else "ocr_done"
        with self._lock:
            return self._db.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None

    def ocr_counts(self) -> dict[str, int]:
        """``{"images": files read by OCR, "with_text": of which with at least one line, "lines": lines,
        "failed": files the model failed on}``."""
        with self._lock:
            images = self._db.execute("SELECT COUNT(*) FROM ocr_done WHERE error IS NULL").fetchone()[0]
            failed = self._db.execute("SELECT COUNT(*) FROM ocr_done WHERE error IS NOT NULL").fetchone()[0]
            with_text = self._db.execute("SELECT COUNT(DISTINCT file_id) FROM ocr_lines").fetchone()[0]
            lines = self._db.execute("SELECT COUNT(*) FROM ocr_lines").fetchone()[0]
        return {"images": int(images), "with_text": int(with_text), "lines": int(lines), "failed": int(failed)}

    def text_matches(self, query: TextQuery) -> list[TextMatch]:
        """Readable files whose stored text matches every term of ``query`` (each a substring of some
        normalised line), best first (score, then id).

        A term of ``TRIGRAM_MIN`` or more characters is looked up in the FTS5 trigram index; a shorter one
        scans the normalised lines (``instr``), as trigrams cannot index it.
        """
        per_term: list[dict[int, tuple[float, str, int]]] = []
        with self._lock:
            for term in query.terms:
                if len(term) >= TRIGRAM_MIN:
                    rows = self._db.execute(
                        "SELECT l.file_id, l.line, l.text, l.norm, l.confidence FROM ocr_fts "
                        "JOIN ocr_lines l ON l.id = ocr_fts.rowid JOIN files f ON f.id = l.file_id "
                        "WHERE ocr_fts MATCH ? AND f.state = 'ok'", (fts_phrase(term),))
                else:
                    rows = self._db.execute(
                        "SELECT l.file_id, l.line, l.text, l.norm, l.confidence FROM ocr_lines l "
                        "JOIN files f ON f.id = l.file_id WHERE instr(l.norm, ?) > 0 AND f.state = 'ok'", (term,))
                best: dict[int, tuple[float, str, int]] = {}
                for file_id, line_no, text, norm, confidence in rows:
                    if term not in norm:  # the index's candidates, confirmed on the exact rule
                        continue
                    score = line_score(term, norm, confidence)
                    if file_id not in best or score > best[file_id][0]:
                        best[file_id] = (score, text, line_no)
                per_term.append(best)
        if not per_term:
            return []
        common = set(per_term[0]).intersection(*per_term[1:])
        matches = []
        for file_id in common:
            score = sum(t[file_id][0] for t in per_term) / len(per_term)
            _, line, line_no = max((t[file_id] for t in per_term), key=lambda v: v[0])
            matches.append(TextMatch(file_id, score, line, line_no))
        matches.sort(key=lambda m: (-m.score, m.file_id))
        return matches

    # -- capture metadata ----------------------------------------------------------------------------
    _META_COLUMNS = "taken, utc_offset, taken_source, latitude, longitude, make, model, lens, orientation, duration"

    def files_without_metadata(self, limit: int = 1000) -> list[FileRecord]:
        """Readable files whose capture metadata was never read from their current content (oldest first)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join('f.' + c.strip() for c in _FILE_COLUMNS.split(','))} FROM files f "
                "LEFT JOIN photo_meta m ON m.file_id = f.id WHERE f.state = 'ok' AND (m.file_id IS NULL OR "
                "m.hash IS NOT f.hash) ORDER BY f.id LIMIT ?", (int(limit),)).fetchall()
        return [_row_to_record(r) for r in rows]

    def put_metadata(self, rows: Sequence[tuple[int, str | None, PhotoMetadata]]) -> None:
        """Store ``(file id, content hash it was read from, metadata)`` rows in one transaction."""
        with self.transaction() as db:
            self._write_metadata(db, rows)

    @classmethod
    def _write_metadata(cls, db: sqlite3.Connection, rows: Sequence[tuple[int, str | None, PhotoMetadata]]) -> None:
        db.executemany(
            f"INSERT OR REPLACE INTO photo_meta (file_id, hash, {cls._META_COLUMNS}, camera) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(fid, h, m.taken_local, m.utc_offset, m.taken_source, m.latitude, m.longitude, m.make, m.model,
              m.lens, m.orientation, m.duration, m.camera.lower() if m.camera else None) for fid, h, m in rows])
        db.executemany("INSERT OR IGNORE INTO cameras (camera) VALUES (?)",
                       [(c,) for c in {m.camera.lower() for _, _, m in rows if m.camera}])

    def metadata_of(self, ids: Iterable[int]) -> dict[int, PhotoMetadata]:
        """``{file id: its capture metadata}`` for the ids that have some."""
        from glimpse.metadata import PhotoMetadata
        wanted = list(ids)
        out: dict[int, PhotoMetadata] = {}
        with self._lock:
            for start in range(0, len(wanted), 900):  # SQLite's parameter limit
                chunk = wanted[start:start + 900]
                marks = ",".join("?" * len(chunk))
                for fid, *values in self._db.execute(
                        f"SELECT file_id, {self._META_COLUMNS} FROM photo_meta WHERE file_id IN ({marks})", chunk):
                    out[int(fid)] = PhotoMetadata(*values)
        return out

    def ids_matching(self, where: MetadataFilter, among: Sequence[int] | None = None) -> set[int]:
        """Ids of files whose metadata passes every bound of ``where`` (files without the field fail).

        Dates and the bounding box of ``near`` are index range scans; the exact distance is tested here."""
        # No join with files: a row outlives its file's readability only until the next index run, and ids that
        # have no vector are dropped by every search anyway (a join cost 40 ms per search at 100k rows).
        clauses, params = self._meta_clauses(where)
        if clauses is None:
            return set()
        if among is not None:
            ids = list(among)
            if not ids or len(ids) > 900:  # SQLite's parameter limit: callers ask about a page of candidates
                return set() if not ids else set().union(*(self.ids_matching(where, ids[i:i + 900])
                                                           for i in range(0, len(ids), 900)))
            clauses.append(f"m.file_id IN ({','.join('?' * len(ids))})")
            params += ids
        if where.near is None:
            with self._lock:
                rows = self._db.execute(f"SELECT m.file_id FROM photo_meta m WHERE {' AND '.join(clauses)}",
                                        params).fetchall()
            return {r[0] for r in rows}
        with self._lock:
            rows = self._db.execute(f"SELECT m.file_id, m.latitude, m.longitude FROM photo_meta m "
                                    f"WHERE {' AND '.join(clauses)}", params).fetchall()
        from glimpse.metafilter import within_radius

        return {fid for fid, lat, lon in rows if within_radius(where.near, lat, lon)}

    def count_matching(self, where: MetadataFilter) -> int:
        """How many files ``ids_matching`` would return, about (``near`` counts its bounding box): an index
        count, so a search can tell a broad filter from a selective one before fetching ids."""
        clauses, params = self._meta_clauses(where)
        if clauses is None:
            return 0
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM photo_meta m WHERE {' AND '.join(clauses)}",
                                        params).fetchone()[0])

    def _meta_clauses(self, where: MetadataFilter) -> tuple[list[str] | None, list[Any]]:
        """SQL conditions on ``photo_meta m`` for ``where`` (None: nothing can match)."""
        clauses: list[str] = ["1"]
        params: list[Any] = []
        if where.after is not None:
            clauses.append("m.taken >= ?")
            params.append(where.after)
        if where.before is not None:
            clauses.append("m.taken < ?")
            params.append(where.before)
        if where.camera is not None:
            # A library has few cameras: the matching names are found in ``cameras``, then their rows by the index
            # (a substring test on every row cost 60 ms at 100k photos; names left by deleted photos match no row).
            wanted = where.camera.lower()
            with self._lock:
                names = [c for (c,) in self._db.execute("SELECT camera FROM cameras") if wanted in c]
            if not names:
                return None, []
            # '+' keeps SQLite off the camera index when a date range is given: the date index is narrower.
            column = "+m.camera" if where.after is not None or where.before is not None else "m.camera"
            clauses.append(f"{column} IN ({','.join('?' * len(names))})")
            params += names
        if where.near is not None:
            lat_min, lat_max, lon_min, lon_max = where.near.bounding_box()
            clauses.append("m.latitude BETWEEN ? AND ? AND m.longitude BETWEEN ? AND ?")
            params += [lat_min, lat_max, lon_min, lon_max]
        return clauses, params

    def metadata_counts(self) -> dict[str, int]:
        """``{"read": files with metadata, "dated": with an EXIF capture time, "placed": with GPS}``."""
        with self._lock:
            read, dated, placed = self._db.execute(
                "SELECT COUNT(*), SUM(taken_source = 'exif'), SUM(latitude IS NOT NULL) FROM photo_meta").fetchone()
        return {"read": int(read or 0), "dated": int(dated or 0), "placed": int(placed or 0)}

    def integrity_check(self) -> list[str]:
        """SQLite's own integrity check; ``["ok"]`` when the database is sound."""
        with self._lock:
            return [r[0] for r in self._db.execute("PRAGMA integrity_check")]

    # -- model key renames ---------------------------------------------------------------------------
    def rename_model_key(self, old_key: str, new_key: str, spec: dict, *,
                         tag_sources: dict[str, str] | None = None) -> bool:
        """Move everything stored under model ``old_key`` to ``new_key`` (the same weights, keyed anew).

        One transaction: the ``models`` row (with the new ``spec``), the embeddings and the change log; the tag
        sources in ``tag_sources`` (old name -> new, for sources named after the key) are renamed as by
        ``rename_tag_source``. Rows already stored under a new name win over the old ones. Returns False when
        ``old_key`` is not registered (already renamed, e.g. by another process).
        """
        with self.transaction() as db:
            row = db.execute("SELECT name, dim, added_at FROM models WHERE key = ?", (old_key,)).fetchone()
            if row is None or old_key == new_key:
                return False
            # The new row first: embeddings reference models (key), and SQLite checks that per statement.
            db.execute("INSERT OR IGNORE INTO models (key, name, dim, spec, added_at) VALUES (?, ?, ?, ?, ?)",
                       (new_key, row[0], row[1], json.dumps(spec, ensure_ascii=False), row[2]))
            db.execute("UPDATE OR IGNORE embeddings SET model_key = ? WHERE model_key = ?", (new_key, old_key))
            db.execute("DELETE FROM embeddings WHERE model_key = ?", (old_key,))
            db.execute("UPDATE changes SET model_key = ? WHERE model_key = ?", (new_key, old_key))
            db.execute("DELETE FROM models WHERE key = ?", (old_key,))
            for old_source, new_source in (tag_sources or {}).items():
                self.rename_tag_source(old_source, new_source)  # joins this transaction
        return True

    def rename_tag_source(self, old_source: str, new_source: str) -> int:
        """Rename tag source ``old_source`` to ``new_source`` in ``tags`` and ``tagged`` (one transaction), for a
        tagger whose source name changed. A file already tagged under the new name keeps only those tags.
        Returns how many files were renamed."""
        with self.transaction() as db:
            for table in ("tags", "tagged"):
                db.execute(f"DELETE FROM {table} WHERE source = ? AND file_id IN "
                           "(SELECT file_id FROM tagged WHERE source = ?)", (old_source, new_source))
            renamed = db.execute("UPDATE OR IGNORE tagged SET source = ? WHERE source = ?",
                                 (new_source, old_source)).rowcount
            db.execute("UPDATE OR IGNORE tags SET source = ? WHERE source = ?", (new_source, old_source))
            for table in ("tags", "tagged"):
                db.execute(f"DELETE FROM {table} WHERE source = ?", (old_source,))
        return renamed

    def sample_embedding_ids(self, model_key: str, count: int, rng: np.random.Generator | None = None) -> list[int]:
        """Up to ``count`` distinct file ids with a vector of ``model_key``, spread at random over the id range.

        Index lookups only (the first id at or after each random point), so it costs the same at 1M vectors
        as at 100: for sampled integrity checks of derived vector indexes.
        """
        rng = rng or np.random.default_rng()
        with self._lock:
            # Two queries: SQLite seeks the primary key for a lone MIN or MAX, but scans every row for both at once.
            bound = "SELECT {}(file_id) FROM embeddings WHERE model_key = ?"
            low = self._db.execute(bound.format("MIN"), (model_key,)).fetchone()[0]
            if low is None:
                return []
            high = self._db.execute(bound.format("MAX"), (model_key,)).fetchone()[0]
            found = set()
            for point in rng.integers(low, high + 1, size=count).tolist():
                row = self._db.execute(
                    "SELECT file_id FROM embeddings WHERE model_key = ? AND file_id >= ? ORDER BY file_id LIMIT 1",
                    (model_key, point),
                ).fetchone()
                found.add(int(row[0]))
        return sorted(found)


def sqlite_failure(exc: sqlite3.Error, path: Path) -> CatalogError:
    """The one-line error for an SQLite failure on the catalog at ``path``: what happened and what to do.

    The advice depends on the cause: a damaged file may be recovered, but a healthy file that is only
    read-only, locked, or on a full disk must never be thrown away.
    """
    name = getattr(exc, "sqlite_errorname", "") or ""
    detail = str(exc)
    if name == "SQLITE_FULL" or "disk is full" in detail:
        return CatalogError(
            f"the disk holding the catalog {path} is full: the batch in progress was not written (nothing is "
            "half-written); free some space and run the same command again"
        )
    if name.startswith("SQLITE_READONLY") or "readonly" in detail:
        return ReadOnlyLibraryError(
            f"the catalog {path} is read-only here: searching works, but indexing, tagging and removing need "
            f"write access to {path.parent}"
        )
    if name.startswith("SQLITE_BUSY") or "database is locked" in detail:
        return LibraryBusyError(
            f"the catalog {path} stayed locked by another process for 30 s; wait for it to finish and run the "
            "same command again"
        )
    if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or "malformed" in detail or "not a database" in detail:
        return CatalogError(
            f"the catalog {path} is damaged (SQLite: {detail}); your images are untouched. Recover it with "
            f"`sqlite3 {path} .recover | sqlite3 recovered.sqlite3` and put the result in its place, or move "
            "the damaged file aside and run `glimpse index` on your folders again (vectors and tags are "
            "recomputed)"
        )
    if name.startswith("SQLITE_CANTOPEN"):
        return CatalogError(
            f"cannot open the catalog {path} (SQLite: {detail}); check that its folder exists and that you may "
            "read (and, to index, write) it"
        )
    if name.startswith("SQLITE_IOERR"):
        return CatalogError(
            f"input/output error on the catalog {path} (SQLite: {detail}); check the disk (full, failing, or a "
            "network share that went away) and run the same command again"
        )
    return CatalogError(f"the catalog {path} failed: SQLite {name or type(exc).__name__}: {detail}")


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: Catalog, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise sqlite_failure(exc, self.path) from exc

    return wrapper


# Every public method and property turns SQLite failures (a damaged page met mid-query, a full disk at
# COMMIT, a read-only file) into one CatalogError line; callers never see sqlite3 exceptions.
for _name, _member in list(vars(Catalog).items()):
    if _name.startswith("_") or _name == "transaction":
        continue
    if isinstance(_member, property):
        setattr(Catalog, _name, property(_guarded(_member.fget) if _member.fget else None,
                                         _guarded(_member.fset) if _member.fset else None, doc=_member.__doc__))
    elif callable(_member):
        setattr(Catalog, _name, _guarded(_member))
del _name, _member
