"""Test support for the CLIP tagger: a small slice of the built-in vocabulary.

The built-in vocabulary has over 2,000 tags x 16 prompt templates; embedding it with even a tiny CLIP takes
minutes on a shared CPU. CLI tests point ``$GLIMPSE_TAG_VOCABULARY`` at this slice (real rows of the built-in
file, so the names, Chinese names and categories are the product's) and keep the default library (where the
prompt-embedding cache lives) inside the test's temporary directory.

The slice is the animal and food sections (the first rows) plus a few rows the tests name: with the tiny random
CLIP (16-d embeddings) some of those tags stand out enough to pass the default threshold on the synthetic
photos, which the tag-filter and facet tests need; sparser samples of the whole file happen to yield none.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from glimpse.tagging.vocab import VOCABULARY_ENV

NEEDED = {"car", "person", "beach", "tree", "sky", "building", "red", "running"}
FIRST_ROWS = 419


def write_small_vocabulary(path: Path) -> Path:
    """The first ``FIRST_ROWS`` built-in rows plus those of ``NEEDED``, in the built-in file's format."""
    text = resources.files("glimpse.tagging").joinpath("data/vocab.tsv").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line and not line.startswith("#")]
    kept = [r for i, r in enumerate(rows) if i < FIRST_ROWS or r.split("\t")[0] in NEEDED]
    path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return path


def use_small_vocabulary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the CLIP tagger at the small vocabulary and the default library into ``tmp_path``."""
    path = write_small_vocabulary(tmp_path / "small-vocab.tsv")
    monkeypatch.setenv(VOCABULARY_ENV, str(path))
    monkeypatch.setenv("GLIMPSE_LIBRARY", str(tmp_path / "default-library"))
    return path


_runner = None


def run(*args: str) -> tuple[int, str]:
    """Run the ``glimpse`` CLI in-process; returns (exit code, stdout)."""
    global _runner
    from typer.testing import CliRunner

    from glimpse.cli import app

    _runner = _runner or CliRunner()
    result = _runner.invoke(app, list(args))
    return result.exit_code, result.stdout

