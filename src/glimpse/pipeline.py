"""Incremental indexing: scan → diff → decode → encode → commit.

* ``scan`` walks the roots (os.scandir; hidden entries skipped; directory symlinks followed once,
  loops cut) and yields every regular file with its size and mtime, and every candidate it cannot read
  (FIFO named .jpg, symlink loop, path over PATH_MAX, folder it cannot list) with the reason.
* ``plan`` diffs the scan against the catalog: new, changed (size or mtime), unchanged, deleted, and
  unchanged images that still lack an embedding of the current model.
* ``prepare`` (worker threads) opens a file without blocking (regular files only), refuses it from its
  first bytes and size when they show it is no image or too large, streams its hash, and decodes +
  preprocesses it from the open file — unless the hash says no decode is needed (touched-but-unchanged,
  moved file). No file is ever read into memory whole.
* with OCR (``Indexer(ocr=engine)``) the same workers read the text of every file whose content the OCR
  model has not read yet, from the image they decoded for CLIP (decode once): such files are decoded at
  ``OCR_MIN_SIDE`` rather than CLIP's input size (a JPEG draft for 224 px loses small text), the text is
  read, its boxes are scaled back to full-image pixels, and the CLIP pixels are preprocessed from the same
  image. Unchanged files that have a vector but no text are decoded for OCR only (their vector is kept);
  a copy of content whose text is known gets the stored text copied.
* the workers preprocess each photo into the row of a batch slab the main thread reserved for it
  (``glimpse.slabs``), so a batch reaches the encoder thread uncopied; the main thread hands each batch over,
  then commits the batch before it (whose vectors are ready by then), with every other result that arrived
  meanwhile (text included), in one catalog transaction: the encoder never waits for the catalog or the next
  batch's arrivals. A killed run loses at most the batches in flight (two or three).

Threads with OCR: the OCR engine is opened with one intra-op thread per session (``Library.index``) and runs
in the ``workers`` decode threads, one image per core, while the CLIP encoder keeps its own session threads
for its batches on the main thread. The OCR models are small and each image has Python steps between its
sessions (box geometry, crops, CTC decoding) that would leave intra-op threads idle; one image per worker
keeps the cores busy through them, and the encoder's batches need no idle worker to wait for.
``benchmarks/ocr_index.py`` compares this layout with all-threads × one worker (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import errno
import functools
import hashlib
import itertools
import json
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import BinaryIO, Protocol, TypeVar

import numpy as np
from PIL import Image

from glimpse.catalog import (
    STATE_ERROR,
    STATE_OK,
    STATE_SKIPPED,
    Catalog,
    FileRecord,
    FileUpdate,
    OcrResult,
    is_video_format,
)
from glimpse.encoders.base import Encoder
from glimpse.errors import GlimpseError, ImageError, UserInputError
from glimpse.images import (
    DEFAULT_MAX_MEGAPIXELS,
    IMAGE_EXTENSIONS,
    SNIFF_BYTES,
    DecodedImage,
    check_content,
    check_file_size,
    decode_image,
    is_candidate,
    not_regular_reason,
    open_regular_file,
)
from glimpse.metadata import read_metadata
from glimpse.ocr.base import OcrEngine, OcrLine
from glimpse.preprocess import preprocess_image
from glimpse.raw import RawSupportMissingError, is_raw_name, raw_support
from glimpse.slabs import Slabs, Slot
from glimpse.spec import Preprocess
from glimpse.video import SamplingRules, is_video_file, is_video_name
from glimpse.video_items import VideoSupportMissingError, sample_for_index, video_support

_Item = TypeVar("_Item")

# Most encoder calls in flight at once (``Encoder.overlapping_batches`` says how many help).
MAX_OVERLAPPING_BATCHES = 2


def batches_in_flight(encoder: Encoder) -> int:
    """How many ``encode_pixels`` calls the indexer keeps running at once with ``encoder``: what the encoder
    says helps (``Encoder.overlapping_batches``), between 1 and :data:`MAX_OVERLAPPING_BATCHES`."""
    return max(1, min(MAX_OVERLAPPING_BATCHES, encoder.overlapping_batches))

# Non-image work (errors, metadata-only updates, moves) is committed at least this often.
MAX_PENDING = 256
# Videos sampled ahead of the encoder, per decode worker (each holds up to max_frames preprocessed frames).
VIDEO_WINDOW_PER_WORKER = 2
# With OCR, JPEGs are draft-decoded only down to this shorter side (pixels): the detector sees about 1000 px
# anyway, and recognition reads each line from this image, so a 12 MP photo is read at half size (a 1/8
# draft, right for CLIP's 224 px, leaves most text a few pixels tall).
OCR_MIN_SIDE = 1024


class Progress(Protocol):
    """Receives indexing progress; the CLI renders it as a bar, the server as job status."""

    def start(self, total: int) -> None: ...
    def advance(self, n: int = 1) -> None: ...
    def finish(self) -> None: ...
    def note(self, text: str | None) -> None:
        """What a long step inside one file is doing ("sampling lecture.mp4: 40%"), None when it is done; called
        from the decode workers."""


class NullProgress:
    def start(self, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass

    def note(self, text: str | None) -> None:
        pass


# -- scan ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScannedFile:
    """A file found by the scan. ``problem`` is set when it cannot even be stat'ed (e.g. a symlink loop)."""

    path: str
    size: int
    mtime_ns: int
    problem: str | None = None


def _looks_like_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _path_max() -> int:
    try:
        return os.pathconf("/", "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        return 4096


def _stat_problem(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENOENT:
        return "broken symlink (target missing)"
    if exc.errno == errno.EACCES:
        return "cannot read file: permission denied"
    if exc.errno == errno.ENAMETOOLONG:
        return f"path too long (over the system's {_path_max()}-byte PATH_MAX): move it higher up to index it"
    return f"cannot stat file: {(exc.strerror or str(exc)).lower()}"


def _folder_problem(exc: OSError) -> str:
    """Why a folder's files cannot be seen, reported on the folder (its files cannot even be named)."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "cannot list folder: permission denied (its images are not indexed)"
    if exc.errno == errno.ENAMETOOLONG:
        return _stat_problem(exc)
    return f"cannot list folder: {(exc.strerror or str(exc)).lower()}"


def _lstat_facts(entry: os.DirEntry[str]) -> tuple[int, int]:
    try:
        lst = entry.stat(follow_symlinks=False)
    except OSError:
        return 0, 0
    return lst.st_size, lst.st_mtime_ns


def _mtime_ns(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


def _entry_is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def scan(roots: Sequence[str]) -> Iterator[ScannedFile]:
    """Every regular file under ``roots`` (absolute paths as given, not resolved through symlinks), and every
    candidate that cannot be read, with ``problem`` saying why: a FIFO, device or socket with an image name
    (or a symlink to one, e.g. ``x.jpg -> /dev/zero``), an entry that cannot be stat'ed (symlink loop, path
    over PATH_MAX), a sub-folder that cannot be listed. Other special files are not candidates (their
    content cannot be sniffed without reading them) and are passed over."""
    visited: set[tuple[int, int]] = set()
    for root in roots:
        try:
            st = os.stat(root)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            yield ScannedFile(root, st.st_size, st.st_mtime_ns, not_regular_reason(st.st_mode))
            continue
        stack = [root]
        visited.add((st.st_dev, st.st_ino))
        while stack:
            directory = stack.pop()
            try:
                with os.scandir(directory) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                if directory != root:  # a root that cannot be listed is the caller's to refuse
                    yield ScannedFile(directory, 0, _mtime_ns(directory), _folder_problem(exc))
                continue
            yield from _scan_entries(entries, stack, visited)


def _scan_entries(entries: list[os.DirEntry[str]], stack: list[str], visited: set[tuple[int, int]]
                  ) -> Iterator[ScannedFile]:
    """One folder's entries: files (and candidates with a problem) yielded, sub-folders pushed on ``stack``."""
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            st = entry.stat()  # follows symlinks
        except OSError as exc:
            if _looks_like_image_name(entry.name) or (exc.errno == errno.ENAMETOOLONG and _entry_is_dir(entry)):
                yield ScannedFile(entry.path, *_lstat_facts(entry), _stat_problem(exc))
            continue
        if stat.S_ISDIR(st.st_mode):
            ident = (st.st_dev, st.st_ino)
            if ident not in visited:  # cuts symlink loops and double visits
                visited.add(ident)
                stack.append(entry.path)
        elif stat.S_ISREG(st.st_mode):
            yield ScannedFile(entry.path, st.st_size, st.st_mtime_ns)
        elif _looks_like_image_name(entry.name):
            yield ScannedFile(entry.path, st.st_size, st.st_mtime_ns, not_regular_reason(st.st_mode))


# -- diff ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One file the workers must look at. ``existing`` is its catalog row, if any."""

    path: str
    size: int
    mtime_ns: int
    existing: FileRecord | None
    problem: str | None = None


@dataclass
class Plan:
    tasks: list[Task]
    unchanged: int
    scanned: int
    deleted: list[FileRecord]


def trial_settings(max_megapixels: float) -> str:
    """The settings a file's "failed" or "not an image" verdict depends on, as stored in ``tried_with``.

    A verdict reached under other settings (a lower ``--max-megapixels``, an older glimpse that knew fewer
    formats) is retried: fixing the cause and re-running fixes the result. Importing rawpy and PyAV to learn
    whether they work costs ~65 ms, so a run asks only when a file's verdict is not ok (``Indexer.run``).
    """
    from glimpse import __version__

    # "raw": whether camera RAWs could be decoded: installing glimpse[raw] makes the skipped ones tried again.
    # "video": the same for videos and PyAV (glimpse[video]).
    return json.dumps({"glimpse": __version__, "max_megapixels": max_megapixels, "raw": raw_support(),
                       "video": video_support()}, sort_keys=True)


def plan(catalog: Catalog, roots: Sequence[str], model_key: str, *, tried_with: Callable[[], str] | None = None,
         ocr_fresh: set[int] | None = None) -> Plan:
    """Diff a scan of ``roots`` against the catalog.

    ``tried_with`` (gives ``trial_settings``, asked only when a failed or skipped file is met): failed and
    skipped files whose verdict was reached under other settings are tried again; None keeps every unchanged
    verdict. ``ocr_fresh`` (with OCR): the ids whose
    text the OCR model read from their current content; other unchanged images become tasks (for OCR).
    """
    known: dict[str, FileRecord] = {}
    for root in roots:
        if os.path.isdir(root):
            known.update(catalog.files_under(root))
        else:
            rec = catalog.file_by_path(root)
            if rec is not None:
                known[rec.path] = rec
    embedded = catalog.files_with_vectors(model_key)
    tasks: list[Task] = []
    seen: set[str] = set()
    unchanged = scanned = 0
    for found in scan(roots):
        if found.path in seen:
            continue
        seen.add(found.path)
        scanned += 1
        rec = known.get(found.path)
        same = rec is not None and rec.size == found.size and rec.mtime_ns == found.mtime_ns
        settled = rec is not None and (
            # (videos have no text read: OCR freshness is the photos')
            rec.id in embedded and (ocr_fresh is None or rec.id in ocr_fresh or is_video_format(rec.format))
            if rec.state == STATE_OK
            else tried_with is None or rec.tried_with == tried_with()
        )
        if same and settled:
            unchanged += 1
            continue
        tasks.append(Task(found.path, found.size, found.mtime_ns, rec, found.problem))
    deleted = [rec for path, rec in known.items() if path not in seen]
    return Plan(tasks, unchanged, scanned, deleted)


# -- decode --------------------------------------------------------------------------------------------
@dataclass
class Prepared:
    """What a worker learned about one task: the catalog update, plus ``pixels`` (float32[3, H, W]) when
    the image must be encoded."""

    task: Task
    update: FileUpdate
    pixels: np.ndarray | None = None
    slot: Slot | None = None  # the batch-slab row the indexer reserved for the pixels (glimpse.slabs)
    ocr_copy: bool = False  # the OCR model read this content in another file: the main thread copies it
    # A video's sampled frames to encode: float32[n, *input_shape] at ``frame_times`` (ms); ``note``: a problem
    # that did not stop it being indexed (a damaged stream whose first frames were kept).
    frame_pixels: np.ndarray | None = None
    frame_times: tuple[int, ...] = ()
    note: str | None = None

    @property
    def to_encode(self) -> int:
        """How many pictures this file puts through the encoder."""
        return (self.pixels is not None) + (len(self.frame_times) if self.frame_pixels is not None else 0)


@dataclass(frozen=True)
class OcrWork:
    """What a worker needs to read text: the engine, the ids whose stored text is current (``fresh``) and
    the content hashes whose text is stored for some file (``known``: copied, not read again)."""

    engine: OcrEngine
    fresh: frozenset[int] = frozenset()
    known: frozenset[str] = frozenset()

    def wanted(self, task: Task, digest: str) -> tuple[bool, bool]:
        """``(read, copy)`` for a file with content ``digest``."""
        old = task.existing
        if old is not None and old.id in self.fresh and old.hash == digest:
            return False, False
        return digest not in self.known, digest in self.known


def read_text(engine: OcrEngine, image: Image.Image, full_width: int) -> tuple[OcrLine, ...]:
    """The lines ``engine`` reads in ``image`` (a possibly downscaled decode), boxes in pixels of the image
    ``full_width`` pixels wide (the file's upright size)."""
    lines = engine.read(image)
    factor = full_width / image.width if image.width else 1.0
    return tuple(lines if factor == 1.0 else (line.scaled(factor) for line in lines))


def ocr_file(path: str, engine: OcrEngine, *, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> list[OcrLine]:
    """The lines ``engine`` reads in the image file ``path``, decoded as indexing decodes it for OCR (so the
    result equals what ``index --ocr`` stores); boxes in full-image pixels. ImageError when it cannot be read."""
    with open_regular_file(path) as fh:
        decoded = decode_image(fh, min_side=OCR_MIN_SIDE, max_megapixels=max_megapixels)
    return list(read_text(engine, decoded.image, decoded.width))


def prepare(
    task: Task,
    pre: Preprocess,
    *,
    move_hashes: frozenset[str] = frozenset(),
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    needs_vector: bool = True,
    ocr: OcrWork | None = None,
    video_rules: SamplingRules | None = None,
    progress: Progress | None = None,
    out: np.ndarray | None = None,
) -> Prepared:
    """Open (never blocking, regular files only), recognise from the first bytes, hash (streamed) and decode +
    preprocess one file, reading it from disk as the decoder needs it; with ``ocr``, also read its text
    from the same decoded image when the OCR model has not read this content. Never raises for a bad file.

    ``out``: a ``float32[*pre.input_shape]`` to write the pixels into (the result's ``pixels`` is then ``out``);
    left as garbage when the result has no pixels."""
    lines: tuple[OcrLine, ...] | None = None
    copy = False
    ocr_error: str | None = None

    def result(state: str, digest: str | None = None, pixels: np.ndarray | None = None, **facts: object) -> Prepared:
        text = None
        if ocr is not None and (lines is not None or ocr_error is not None):
            # A failure is recorded too (with its reason): it is not retried until the content or model changes.
            text = OcrResult(ocr.engine.model_id, lines or (), ocr_error)
        update = FileUpdate(task.path, task.size, task.mtime_ns, state, digest, ocr=text,  # type: ignore[arg-type]
                            **facts)  # type: ignore[arg-type]
        return Prepared(task, update, pixels, ocr_copy=copy and text is None)

    def read(decoded: DecodedImage) -> None:
        nonlocal lines, ocr_error
        assert ocr is not None
        try:
            lines = read_text(ocr.engine, decoded.image, decoded.width)
        except GlimpseError as exc:
            ocr_error = f"text recognition failed: {exc}"
        except Exception as exc:  # the image indexes even when the OCR model trips over it
            ocr_error = f"text recognition failed: {type(exc).__name__}: {exc}"

    if task.problem:
        return result(STATE_ERROR, error=task.problem)
    try:
        with open_regular_file(task.path) as fh:
            head = fh.read(SNIFF_BYTES)
            if is_video_file(task.path, head):
                return prepare_video(task, pre, content_hash(fh), move_hashes=move_hashes, needs_vector=needs_vector,
                                     rules=video_rules, progress=progress)
            if not is_candidate(task.path, head):
                return result(STATE_SKIPPED)
            # What the first bytes and the file size already tell is said before reading the rest.
            check_content(fh)
            check_file_size(os.fstat(fh.fileno()).st_size, max_megapixels)
            digest = content_hash(fh)
            read_ocr, copy = ocr.wanted(task, digest) if ocr is not None else (False, False)
            old = task.existing
            moved = old is None and digest in move_hashes  # the main thread re-links the old row
            if moved or (old is not None and old.hash == digest and old.state == STATE_OK and not needs_vector):
                # Touched but not changed, or moved: keep the stored vectors; decode only to read text.
                facts = {} if moved else {"width": old.width, "height": old.height, "format": old.format}
                if read_ocr:
                    try:
                        read(decode_image(fh, min_side=OCR_MIN_SIDE, max_megapixels=max_megapixels))
                    except ImageError as exc:
                        ocr_error = f"text recognition failed: {exc}"
                    except Exception as exc:  # whatever the decoder throws: the stored vector stays
                        ocr_error = f"text recognition failed: cannot decode: {type(exc).__name__}: {exc}"
                return result(STATE_OK, digest, **facts)
            try:
                side = max(pre.min_side, OCR_MIN_SIDE) if read_ocr else pre.min_side
                decoded = decode_image(fh, min_side=side, max_megapixels=max_megapixels)
                if read_ocr:
                    read(decoded)
                pixels = preprocess_image(decoded.image, pre, out=out)
                # The header's metadata, from the EXIF the decode just read, saves metadata_index opening the file
                # again after the run. RAWs are left to it: their decode may take a preview's EXIF instead.
                metadata = None if is_raw_name(task.path) else read_metadata(decoded.exif, task.mtime_ns)
            except RawSupportMissingError as exc:  # not this file's fault: said once per run, not per file
                return result(STATE_SKIPPED, digest, error=str(exc))
            except ImageError as exc:
                return result(STATE_ERROR, digest, error=str(exc))
            except Exception as exc:  # a broken file must never stop a run, whatever the decoder throws
                return result(STATE_ERROR, digest, error=f"cannot decode: {type(exc).__name__}: {exc}")
    except ImageError as exc:  # cannot be opened, not an image by its first bytes, too large a file
        return result(STATE_ERROR, error=str(exc))
    except OSError as exc:  # a read failing (EIO on a dying disk, a network share gone)
        return result(STATE_ERROR, error="cannot read file: " + (exc.strerror or str(exc)).lower())
    return result(STATE_OK, digest, pixels, width=decoded.width, height=decoded.height, format=decoded.format,
                  metadata=metadata)


def prepare_video(task: Task, pre: Preprocess, digest: str, *, move_hashes: frozenset[str], needs_vector: bool,
                  rules: SamplingRules | None, progress: Progress | None = None) -> Prepared:
    """``prepare`` for a video (content hash ``digest``): its frames sampled and preprocessed, unless its stored
    frames still describe it (unchanged content, or a move); a long scan is told to ``progress.note``. Never
    raises for a bad file."""
    old = task.existing
    moved = old is None and digest in move_hashes
    if moved or (old is not None and old.hash == digest and old.state == STATE_OK and not needs_vector):
        facts = {} if moved else {"width": old.width, "height": old.height, "format": old.format}
        return Prepared(task, FileUpdate(task.path, task.size, task.mtime_ns, STATE_OK, digest, **facts))
    try:
        video = sample_for_index(task.path, pre, rules, note=progress.note if progress is not None else None)
    except VideoSupportMissingError as exc:  # said once per run, retried once PyAV is installed
        return Prepared(task, FileUpdate(task.path, task.size, task.mtime_ns, STATE_SKIPPED, digest, error=str(exc)))
    except ImageError as exc:  # no video stream, unreadable container, nothing decodable
        return Prepared(task, FileUpdate(task.path, task.size, task.mtime_ns, STATE_ERROR, digest, error=str(exc)))
    except Exception as exc:  # whatever the demuxer throws: a broken file never stops a run
        return Prepared(task, FileUpdate(task.path, task.size, task.mtime_ns, STATE_ERROR, digest,
                                         error=f"cannot read video: {type(exc).__name__}: {exc}"))
    update = FileUpdate(task.path, task.size, task.mtime_ns, STATE_OK, digest, width=video.width,
                        height=video.height, format=video.format)
    note = (f"video damaged ({video.damaged}): indexed the {len(video.times_ms)} frames before it"
            if video.damaged else None)
    return Prepared(task, update, frame_pixels=video.pixels, frame_times=video.times_ms, note=note)


def content_hash(fh: BinaryIO) -> str:
    """The catalog's content hash: blake2b-128 of the whole file, hex, read in blocks from its start (the
    same value as ``hashlib.blake2b(data, digest_size=16)`` of the file's bytes)."""
    fh.seek(0)
    digest = hashlib.file_digest(fh, lambda: hashlib.blake2b(digest_size=16)).hexdigest()
    fh.seek(0)
    return digest


def image_files(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The image candidates named by ``paths`` (files, or folders walked recursively), in a stable order.

    The one file listing of glimpse. Paths are absolute as the caller named them (``abspath``, symlinks
    kept), so a caller can match them with its own list; ``Library.vectors`` finds a file's catalog row by
    this path or by its ``realpath`` (roots are stored resolved). Unreadable entries and files that are
    not image candidates (by extension or content) are left out.
    """
    found: list[str] = []
    for raw in paths:
        root = os.path.abspath(os.path.expanduser(os.fspath(raw)))
        if not os.path.exists(root):
            raise UserInputError(f"{os.fspath(raw)} does not exist; give image files or folders")
        found += [item.path for item in scan([root]) if item.problem is None and is_candidate(item.path)]
    return found


def _ordered_map(pool: ThreadPoolExecutor, fn: Callable[[_Item], Prepared], items: Iterable[_Item], window: int
                 ) -> Iterator[Prepared]:
    """``pool.map`` with at most ``window`` tasks in flight (bounded memory for decoded pixels); ``items`` is
    drawn on the calling thread, one item as each task is submitted."""
    pending: deque[Future[Prepared]] = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


# -- report --------------------------------------------------------------------------------------------
@dataclass
class IndexReport:
    """Summary of one indexing run."""

    model: str
    model_key: str
    scanned: int = 0
    unchanged: int = 0
    added: int = 0
    updated: int = 0
    moved: int = 0
    reused: int = 0
    removed: int = 0
    skipped: int = 0
    failed: int = 0
    encoded: int = 0
    seconds: float = 0.0
    errors: list[tuple[str, str]] = field(default_factory=list)
    ocr_model: str | None = None  # the OCR model's id, when the run read text
    ocr_read: int = 0  # images whose text was read in this run
    ocr_copied: int = 0  # images that got the stored text of the same content
    ocr_lines: int = 0  # lines read
    ocr_failed: int = 0  # images whose text could not be read (they are indexed; the reason is in errors)
    metadata_read: int = 0  # files whose capture metadata (EXIF date, place, camera) was read in this run
    videos: int = 0  # videos sampled (or copied from a same-content video) in this run
    frames: int = 0  # frames encoded from them
    # problems that did not stop a file being indexed: (path, one line), e.g. a damaged video's kept frames
    warnings: list[tuple[str, str]] = field(default_factory=list)
    # skipped files that an optional extra would read: {"camera RAW files need … glimpse[raw]": count}
    missing_support: dict[str, int] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k not in ("errors", "warnings")}
        data["images_per_second"] = round(self.images_per_second, 2)
        data["seconds"] = round(self.seconds, 3)
        data["errors"] = [{"path": _printable(p), "reason": r} for p, r in self.errors]
        data["warnings"] = [{"path": _printable(p), "reason": r} for p, r in self.warnings]
        return data


def _printable(path: str) -> str:
    return os.fsencode(path).decode("utf-8", "replace")


# -- the run -------------------------------------------------------------------------------------------
@dataclass
class _Batch:
    """One batch on its way to the catalog: every result, the photos and videos among them in the order their
    pixels went to the encoder, and the encoder's vectors (None: nothing to encode)."""

    results: list[Prepared]
    photos: list[Prepared]
    videos: list[Prepared]
    vectors: Future[np.ndarray] | None
    buffer: np.ndarray | None = None  # the array the pixels were gathered into, reused once the vectors are back
    slots: list[Slot] = field(default_factory=list)  # the slab rows encoded in place, released once they are back


class Indexer:
    """Runs one incremental indexing pass of ``roots`` into ``catalog`` with ``encoder``."""

    def __init__(
        self,
        catalog: Catalog,
        encoder: Encoder,
        *,
        batch_size: int = 32,
        workers: int | None = None,
        max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
        progress: Progress | None = None,
        ocr: OcrEngine | None = None,
        video_rules: SamplingRules | None = None,
    ) -> None:
        """``ocr``: also read the text of every image whose content this engine's model has not read;
        ``video_rules``: how videos are sampled (``SamplingRules()`` by default)."""
        if batch_size < 1:
            raise GlimpseError(f"batch size must be at least 1, got {batch_size}")
        self.catalog = catalog
        self.encoder = encoder
        self.batch_size = batch_size
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        self.max_megapixels = max_megapixels
        self.progress = progress or NullProgress()
        self.ocr = ocr
        self.video_rules = video_rules

    def run(self, roots: Sequence[str]) -> IndexReport:
        started = time.perf_counter()
        spec = self.encoder.spec
        report = IndexReport(model=spec.name, model_key=spec.key)
        tried_with = functools.cache(lambda: trial_settings(self.max_megapixels))  # needed for failures only
        ocr_work = None
        self._ocr_sources: dict[str, int] = {}
        if self.ocr is not None:
            report.ocr_model = self.ocr.model_id
            self._ocr_sources = self.catalog.ocr_sources(self.ocr.model_id)
            ocr_work = OcrWork(self.ocr, frozenset(self.catalog.ocr_fresh_ids(self.ocr.model_id)),
                               frozenset(self._ocr_sources))
        work = plan(self.catalog, roots, spec.key, tried_with=tried_with,
                    ocr_fresh=set(ocr_work.fresh) if ocr_work is not None else None)
        report.scanned, report.unchanged = work.scanned, work.unchanged
        movable = {rec.hash: rec for rec in work.deleted if rec.hash and rec.state == STATE_OK}
        move_hashes = frozenset(movable)
        embedded = self.catalog.files_with_vectors(spec.key)

        def job(item: tuple[Task, Slot | None]) -> Prepared:
            task, slot = item
            needs_vector = task.existing is None or task.existing.id not in embedded
            prepared = prepare(task, spec.preprocess, move_hashes=move_hashes, max_megapixels=self.max_megapixels,
                               needs_vector=needs_vector, ocr=ocr_work, video_rules=self.video_rules,
                               progress=self.progress, out=slot.array if slot is not None else None)
            prepared.slot = slot
            return prepared

        # Each photo's pixels are written into a row of a batch slab reserved as its task is submitted, so a batch
        # of consecutive photos goes to the encoder without being copied (glimpse.slabs).
        self._slabs = Slabs(self.batch_size, spec.preprocess.input_shape)
        self._last_slot: Slot | None = None  # the row of the latest pending photo
        self._pending: list[Prepared] = []
        self._moved: list[FileRecord] = []  # deleted rows re-linked to a new path in this run
        self._encoding_count = 0  # queued images that still need the encoder
        # Batches handed to the encoder and not yet written, oldest first (see _flush).
        self._in_flight: deque[_Batch] = deque()
        self._free: list[np.ndarray] = []  # batch arrays no batch in flight uses (_batch_array)
        if work.tasks:
            self.encoder.prefetch_image_tower()  # session set-up overlaps the first decodes
        self.progress.start(len(work.tasks))
        try:
            with ThreadPoolExecutor(MAX_OVERLAPPING_BATCHES, thread_name_prefix="glimpse-encode") as self._encoding, \
                    ThreadPoolExecutor(self.workers, thread_name_prefix="glimpse-decode") as pool:
                # Videos last, few at a time: one holds up to max_frames preprocessed frames (~70 MB at the cap),
                # and the workers sample far faster than the encoder encodes, so a photo-sized window of videos
                # would hold gigabytes. Two per worker ahead still keep the encoder fed between its batches.
                photos = [t for t in work.tasks if not is_video_name(t.path)]
                videos = [t for t in work.tasks if is_video_name(t.path)]
                ahead = VIDEO_WINDOW_PER_WORKER * self.workers
                slabs = self._slabs
                stream = itertools.chain(
                    _ordered_map(pool, job, ((t, slabs.reserve()) for t in photos), window=max(self.batch_size * 2, 8)),
                    _ordered_map(pool, job, ((t, None) for t in videos), window=ahead))
                for prepared in stream:
                    if prepared.update.state != STATE_OK:
                        prepared.update = replace(prepared.update, tried_with=tried_with())
                    self._accept(prepared, movable, report)
                    if prepared.slot is not None:
                        if self._last_slot is not None and self._last_slot.slab is not prepared.slot.slab:
                            self._flush(report)  # a batch stays in one slab: it ends where the next slab's rows begin
                        self._last_slot = prepared.slot
                    self._pending.append(prepared)
                    # Text read counts like an image to encode: a batch holds at most batch_size of either,
                    # so a killed run loses at most the batches in flight of OCR work too.
                    self._encoding_count += max(prepared.to_encode, prepared.update.ocr is not None)
                    if self._encoding_count >= self.batch_size or len(self._pending) >= MAX_PENDING:
                        self._flush(report)
                self._flush(report)
                while self._in_flight:
                    self._land(report)
            moved_ids = {m.id for m in self._moved}
            gone = [rec.id for rec in work.deleted if rec.id not in moved_ids]
            report.removed = self.catalog.delete_files(gone) if gone else 0
        finally:
            self.progress.finish()
            self._free = []
            del self._slabs
        report.seconds = time.perf_counter() - started
        return report

    def _accept(self, p: Prepared, movable: dict[str, FileRecord], report: IndexReport) -> None:
        """Decide how a prepared file lands in the catalog (move, reuse, encode); a slab row left without pixels
        is released."""
        update, existing = p.update, p.task.existing
        if update.state == STATE_OK and p.to_encode == 0 and existing is None:
            source = movable.pop(update.hash or "", None)
            if source is not None:
                p.update = replace(update, width=source.width, height=source.height, format=source.format,
                                   move_from=source.id)
                self._moved.append(source)
            else:
                # A second copy of a moved file: share the moved file's vector.
                twin = next((m for m in self._moved if m.hash == update.hash), None)
                p.update = replace(update, reuse_from=twin.id if twin else None)
        elif p.pixels is not None and update.hash:
            twin_id = self.catalog.reusable_embedding(update.hash, self.encoder.key)
            if twin_id is not None and (existing is None or twin_id != existing.id):
                p.update, p.pixels = replace(update, reuse_from=twin_id), None
        elif p.frame_pixels is not None and update.hash:
            # A copy of a video already sampled with this model: its frames are copied, not decoded again.
            twin_id = self.catalog.video_with_frames(update.hash, self.encoder.key)
            if twin_id is not None and (existing is None or twin_id != existing.id):
                p.update, p.frame_pixels = replace(update, frames_from=twin_id), None
        if p.ocr_copy and p.update.state == STATE_OK:
            # The text of this content is stored for another file: copied (a moved row keeps its own).
            source = self._ocr_sources.get(p.update.hash or "")
            if source is not None and source not in (existing.id if existing else None, p.update.move_from):
                p.update = replace(p.update, ocr_from=source)
        if p.slot is not None and p.pixels is None:
            self._slabs.release(p.slot)
            p.slot = None

    def _flush(self, report: IndexReport) -> None:
        """Hand the pending results' pixels to the encoder thread, then write the batches handed over before that
        are more than the encoder overlaps (``Encoder.overlapping_batches``; their vectors are ready by now, or
        soon): the encoder goes from one batch to the next without waiting for the catalog or the next batch's
        arrivals, and where it overlaps two, the next batch's pieces take each core the moment this batch's piece
        on it is done. A batch of photos in one slab is encoded where the workers wrote it (``Slabs.batch``)."""
        if not self._pending:
            return
        photos = [p for p in self._pending if p.pixels is not None]
        videos = [p for p in self._pending if p.frame_pixels is not None]
        vectors: Future[np.ndarray] | None = None
        buffer = None
        slots = [p.slot for p in photos if p.slot is not None]
        pixels = self._slabs.batch(slots) if not videos and len(slots) == len(photos) else None
        if pixels is None and (photos or videos):
            # Photos from two slabs or without one, or with videos' frames: gathered into a reused array.
            images = [p.pixels for p in photos if p.pixels is not None]
            frames = [p.frame_pixels for p in videos if p.frame_pixels is not None]
            rows = len(images) + sum(len(f) for f in frames)
            buffer = self._batch_array(rows, (images[0] if images else frames[0][0]).shape)
            if images:
                np.stack(images, out=buffer[: len(images)])
            start = len(images)
            for f in frames:
                buffer[start : start + len(f)] = f
                start += len(f)
            pixels = buffer[:rows]
            for slot in slots:  # copied: the rows are free
                self._slabs.release(slot)
            slots = []
        for p in photos + videos:
            p.pixels = p.frame_pixels = None  # the batch array is what is encoded
            p.slot = None
        if pixels is not None:
            vectors = self._encoding.submit(self.encoder.encode_pixels, pixels)
        self._in_flight.append(_Batch(self._pending, photos, videos, vectors, buffer, slots))
        self._pending, self._encoding_count, self._last_slot = [], 0, None
        overlap = batches_in_flight(self.encoder)
        while len(self._in_flight) > overlap:
            self._land(report)

    def _batch_array(self, rows: int, shape: tuple[int, ...]) -> np.ndarray:
        """A ``float32[>= rows, *shape]`` to gather a batch into: one no batch in flight uses, kept from an earlier
        batch where one fits (a fresh 19 MB array per batch of 32 cost the main thread its page faults, ~12 ms)."""
        while self._free:
            buffer = self._free.pop()
            if buffer.shape[1:] == shape and len(buffer) >= rows:
                return buffer
        return np.empty((max(rows, self.batch_size), *shape), np.float32)

    def _land(self, report: IndexReport) -> None:
        """Write the oldest batch in flight (its vectors, then every result in one catalog transaction)."""
        batch = self._in_flight.popleft()
        if batch.vectors is not None:
            vectors = batch.vectors.result()
            if batch.buffer is not None:  # the encoder is done with it
                self._free.append(batch.buffer)
            for slot in batch.slots:
                self._slabs.release(slot)
            for p, vector in zip(batch.photos, vectors, strict=False):
                p.update = replace(p.update, vector=vector)
            start = len(batch.photos)
            for p in batch.videos:
                n = len(p.frame_times)
                p.update = replace(p.update, frames=tuple(zip(p.frame_times, vectors[start:start + n], strict=True)))
                start += n
        self.catalog.apply([p.update for p in batch.results], self.encoder.key)
        for p in batch.results:
            self._count(p, report)
        self.progress.advance(len(batch.results))

    @staticmethod
    def _count(p: Prepared, report: IndexReport) -> None:
        update = p.update
        report.metadata_read += update.metadata is not None
        if update.state == STATE_OK:
            if update.ocr is not None and update.ocr.error is not None:
                report.ocr_failed += 1
                report.errors.append((p.task.path, update.ocr.error))
            elif update.ocr is not None:
                report.ocr_read += 1
                report.ocr_lines += len(update.ocr.lines)
            elif update.ocr_from is not None:
                report.ocr_copied += 1
        if p.note:
            report.warnings.append((p.task.path, p.note))
        if update.state == STATE_OK and (update.frames is not None or update.frames_from is not None):
            report.videos += 1
            report.frames += len(update.frames or ())
        if update.state == STATE_ERROR:
            report.failed += 1
            report.errors.append((p.task.path, update.error or "unknown error"))
        elif update.state == STATE_SKIPPED:
            report.skipped += 1
            if update.error:  # skipped for want of an optional extra: one line per reason, with a count
                report.missing_support[update.error] = report.missing_support.get(update.error, 0) + 1
        elif update.move_from is not None:
            report.moved += 1
        else:
            if update.vector is not None or update.frames:
                report.encoded += 1
            elif update.reuse_from is not None or update.frames_from is not None:
                report.reused += 1
            if p.task.existing is None:
                report.added += 1
            else:
                report.updated += 1
