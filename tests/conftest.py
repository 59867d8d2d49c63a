"""Shared fixtures: tiny random checkpoints (built once per session), synthetic photos, libraries."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The weights-digest cache (glimpse.digests) lives under XDG_CACHE_HOME: tests keep theirs out of the user's.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="glimpse-test-cache-")

SHARED_DATA = Path(os.environ.get("GLIMPSE_TEST_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


# What a catalog of schema 4 lacks (the capture metadata of v5): tests that make an older catalog drop these first.
# Statements that turn a current catalog back into one of schema 5 (no frames, vectors keyed to files) and 4.
DROP_V6 = (
    "DROP TRIGGER frames_delete; DROP TRIGGER files_delete_vectors; DROP TABLE frames; "
    "CREATE TABLE embeddings_v5 (model_key TEXT NOT NULL REFERENCES models (key), file_id INTEGER NOT NULL "
    "REFERENCES files (id) ON DELETE CASCADE, dtype TEXT NOT NULL, vector BLOB NOT NULL, "
    "PRIMARY KEY (model_key, file_id)) WITHOUT ROWID; "
    "INSERT INTO embeddings_v5 SELECT model_key, file_id, dtype, vector FROM embeddings; DROP TABLE embeddings; "
    "ALTER TABLE embeddings_v5 RENAME TO embeddings; CREATE INDEX embeddings_file ON embeddings (file_id); "
    "ALTER TABLE photo_meta DROP COLUMN duration; "
)
DROP_V5 = DROP_V6 + "DROP TABLE photo_meta; DROP TABLE cameras; "


def count_rows(catalog_path: Path, table: str) -> int:
    """Rows of ``table`` in a catalog another process is writing (read-only, never waiting long): 0 while the
    catalog or its table does not exist yet, or the writer holds it busy — for progress polls in kill -9 tests."""
    if not catalog_path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{catalog_path}?mode=ro", uri=True, timeout=0.2)
        try:
            return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def kill_at_rows(cmd: list[str], catalog_path: Path, table: str, target: int, timeout: float = 300.0) -> bool:
    """Run ``cmd`` (an indexer) and SIGKILL it once ``table`` of the catalog it writes holds ``target`` rows; True
    when the kill landed, False when it finished first. Fails the test if it failed by itself."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline and count_rows(catalog_path, table) < target:
        time.sleep(0.01)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    error = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.returncode in (0, -signal.SIGKILL), error
    return killed


def shared_data(*parts: str) -> Path:
    """A path inside ../shared/data; skips the test cleanly when the data is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"test data {path} is not available")
    return path


def make_photo(path: Path, seed: int, size: tuple[int, int] = (96, 72), fmt: str | None = None) -> Path:
    """A synthetic 'photo': smooth random colour field plus blocks, distinct per seed."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    img = Image.fromarray(base, "RGB").resize((w, h), Image.Resampling.BICUBIC)
    pixels = np.asarray(img).copy()
    for _ in range(3):
        x, y = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        pixels[y : y + h // 4, x : x + w // 4] = rng.integers(0, 256, size=3, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, format=fmt)
    return path


class RecordingProgress:
    """A Progress (``glimpse.pipeline.Progress``) that remembers what it was told."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.done = 0
        self.finished = False

    def start(self, total: int) -> None:
        self.total = total

    def advance(self, n: int = 1) -> None:
        self.done += n

    def finish(self) -> None:
        self.finished = True


def make_photos(directory: Path, n: int, start: int = 0) -> list[Path]:
    return [make_photo(directory / f"img_{i:03d}.jpg", seed=i) for i in range(start, start + n)]


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A tiny random CLIP checkpoint directory in the real HF format (small trained CLIP tokenizer)."""
    from tiny_models import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture(scope="session")
def tiny_clip_b(tmp_path_factory) -> Path:
    """A second tiny CLIP with other weights (and so another model key)."""
    from tiny_models import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip-b", projection_dim=24, seed=1)


@pytest.fixture(scope="session")
def clip_tokenizer_dir(tmp_path_factory) -> Path:
    """A tokenizer folder (``tokenizer.json`` in CLIP's format) for training from scratch: the small one."""
    from tiny_models import write_small_clip_tokenizer

    return write_small_clip_tokenizer(tmp_path_factory.mktemp("tokenizer") / "clip-tokenizer")


@pytest.fixture()
def open_lib(tmp_path, tiny_clip):
    """Factory: open a library in tmp_path bound to the tiny CLIP (or another model)."""
    import glimpse

    opened = []

    def _open(model: Path | None = None, directory: Path | None = None):
        lib = glimpse.open_library(directory or tmp_path / "library", model=str(model or tiny_clip))
        opened.append(lib)
        return lib

    yield _open
    for lib in opened:
        lib.close()


@pytest.fixture(scope="session")
def fx(tmp_path_factory, tiny_clip):
    """The server tests' library: generated photos in two folders, a symlink out of the root, indexed."""
    from server_harness import session_fixture

    return session_fixture(tmp_path_factory, tiny_clip)


@pytest.fixture(scope="session")
def server(tmp_path_factory, tiny_clip, pytestconfig):
    """The real app on uvicorn (127.0.0.1, random port), no token, started once per test session."""
    from server_harness import session_server

    return session_server("open", tmp_path_factory, tiny_clip, pytestconfig)


@pytest.fixture()
def small_vocab(tmp_path, monkeypatch):
    """The CLIP tagger's vocabulary is a small slice of the built-in one (see tests/tagging_helpers.py)."""
    from tagging_helpers import use_small_vocabulary

    return use_small_vocabulary(tmp_path, monkeypatch)
