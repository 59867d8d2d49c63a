"""The tag-vocabulary text cache survives interruptions chunk by chunk, and its encoding reports progress."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import RecordingProgress
from glimpse.zeroshot import TextCache, move_text_cache

DIM = 4


def fake_vector(text: str) -> np.ndarray:
    """A deterministic unit vector per text."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


class FakeEncoder:
    """Encodes texts to ``fake_vector``; records what it was asked; fails on call ``fail_on`` (1-based)."""

    key, dim = "fake-model", DIM

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise KeyboardInterrupt  # what Ctrl-C does in the middle of a long first run
        return np.stack([fake_vector(t) for t in texts])

    @property
    def encoded(self) -> list[str]:
        return [t for call in self.calls for t in call]


TEXTS = [f"a photo of tag {i}" for i in range(45)]


@pytest.fixture()
def small_chunks(monkeypatch):
    monkeypatch.setattr(TextCache, "CHUNK", 10)


def test_an_interrupted_encoding_keeps_its_finished_chunks(tmp_path, small_chunks):
    first = FakeEncoder(fail_on=3)
    with pytest.raises(KeyboardInterrupt):
        TextCache(tmp_path, "fake-model").encode(first, TEXTS)
    assert len(first.encoded) == 30  # two chunks done, the third interrupted

    second = FakeEncoder()
    vectors = TextCache(tmp_path, "fake-model").encode(second, TEXTS)
    assert sorted(second.encoded) == sorted(set(TEXTS) - set(first.encoded[:20]))  # only what was not saved
    np.testing.assert_array_equal(vectors, np.stack([fake_vector(t) for t in TEXTS]))
    # once complete, the chunks are folded into one file, and a third run encodes nothing
    cache = TextCache(tmp_path, "fake-model")
    assert cache.path.is_file() and not cache.part_files()
    third = FakeEncoder()
    np.testing.assert_array_equal(cache.encode(third, TEXTS), vectors)
    assert third.calls == []


def test_a_killed_encoding_resumes_without_a_damaged_cache(tmp_path, small_chunks):
    """kill -9 of a real process in the middle of a first run: the next run loads what was saved."""
    ready = tmp_path / "ready"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_tagging_cache import FakeEncoder, TEXTS
        from glimpse.zeroshot import TextCache

        class Stalling(FakeEncoder):
            def encode_texts(self, texts):
                if len(self.calls) == 2:  # two chunks saved: signal the test, then wait to be killed
                    open({str(ready)!r}, "w").close()
                    time.sleep(3600)
                return super().encode_texts(texts)

        TextCache.CHUNK = 10
        TextCache({str(tmp_path / "cache")!r}, "fake-model").encode(Stalling(), TEXTS)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        while not ready.exists():
            if child.poll() is not None:
                pytest.fail(f"the child process ended early with exit code {child.returncode}")
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    resumed = FakeEncoder()
    vectors = TextCache(tmp_path / "cache", "fake-model").encode(resumed, TEXTS)
    assert len(resumed.encoded) == 25
    np.testing.assert_array_equal(vectors, np.stack([fake_vector(t) for t in TEXTS]))


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_leftovers_of_a_kill_during_a_write_are_ignored_and_cleaned(tmp_path, small_chunks):
    cache = TextCache(tmp_path, "fake-model")
    cache.parts_dir.mkdir(parents=True)
    (cache.parts_dir / "00000000000000000001-1.npz").write_bytes(b"PK\x03\x04 truncated")  # damaged part
    orphan = cache.parts_dir / f".00000000000000000002-7.{_dead_pid()}.tmp"  # a writer killed mid-write
    orphan.write_bytes(b"half a file")
    live = cache.parts_dir / f".00000000000000000003-7.{os.getpid()}.tmp"  # a live writer's: left alone
    live.write_bytes(b"being written")

    encoder = FakeEncoder()
    vectors = TextCache(tmp_path, "fake-model").encode(encoder, TEXTS)
    np.testing.assert_array_equal(vectors, np.stack([fake_vector(t) for t in TEXTS]))
    assert not orphan.exists() and live.exists()
    assert not list(cache.parts_dir.glob("*.npz"))  # the damaged part was dropped with the merge


def test_encoding_reports_progress_only_when_something_is_encoded(tmp_path, small_chunks):
    progress = RecordingProgress()
    TextCache(tmp_path, "fake-model").encode(FakeEncoder(), TEXTS, progress)
    assert (progress.total, progress.done, progress.finished) == (45, 45, True)

    cached = RecordingProgress()
    TextCache(tmp_path, "fake-model").encode(FakeEncoder(), TEXTS, cached)
    assert cached.total is None  # nothing to encode: no bar at all


def test_a_text_cache_moves_to_a_new_model_key(tmp_path, small_chunks):
    text_dir = tmp_path / "cache" / "text"
    TextCache(text_dir, "old-key").encode(FakeEncoder(), TEXTS[:20])  # a merged main file
    with pytest.raises(KeyboardInterrupt):
        TextCache(text_dir, "old-key").encode(FakeEncoder(fail_on=2), TEXTS)  # and one saved part of 10
    assert move_text_cache(tmp_path, "old-key", "new-key")
    encoder = FakeEncoder()
    vectors = TextCache(text_dir, "new-key").encode(encoder, TEXTS)
    assert len(encoder.encoded) == 45 - 20 - 10
    np.testing.assert_array_equal(vectors, np.stack([fake_vector(t) for t in TEXTS]))
    assert not move_text_cache(tmp_path, "old-key", "new-key")  # nothing left to move


def test_the_clip_tagger_reports_vocabulary_progress(tmp_path, tiny_clip):
    from glimpse.registry import load_encoder
    from glimpse.tagging.base import Vocabulary
    from glimpse.tagging.clip_tagger import ClipTagger
    from glimpse.templates import TAG_TEMPLATES
    from glimpse.zeroshot import text_cache_for

    encoder = load_encoder(str(tiny_clip))
    vocab = Vocabulary(["progress dog", "progress cat", "progress car"], np.full(3, 0.5, np.float32))
    progress = RecordingProgress()
    ClipTagger(encoder, vocab, cache=text_cache_for(tmp_path, encoder.key), progress=progress)
    assert (progress.total, progress.done, progress.finished) == (3 * len(TAG_TEMPLATES),) * 2 + (True,)
    uncached = RecordingProgress()
    ClipTagger(encoder, Vocabulary(["progress bird"], np.full(1, 0.5, np.float32)), progress=uncached)
    assert (uncached.total, uncached.done) == (len(TAG_TEMPLATES),) * 2


def test_tagging_a_library_reports_vocabulary_progress(tmp_path, open_lib, monkeypatch):
    from importlib import resources

    from conftest import make_photos
    from glimpse.tagging.library_tags import tag_library
    from glimpse.tagging.vocab import VOCABULARY_ENV
    from glimpse.templates import TAG_TEMPLATES

    text = resources.files("glimpse.tagging").joinpath("data/vocab.tsv").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line and not line.startswith("#")][10:12]
    (tmp_path / "vocab.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setenv(VOCABULARY_ENV, str(tmp_path / "vocab.tsv"))
    lib = open_lib()
    lib.index([make_photos(tmp_path / "pics", 2)[0]])
    progress = RecordingProgress()
    report = tag_library(lib, progress=progress)
    assert (progress.total, progress.done, progress.finished) == (2 * len(TAG_TEMPLATES),) * 2 + (True,)
    assert report.tagged == 1
