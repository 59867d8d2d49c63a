"""Without --model, `tag`, `bench` and `classify` use the model the library was built with, not the hub default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import make_photos
from glimpse.cli import app
from glimpse.registry import DEFAULT_MODEL, load_spec
from glimpse.tagging.vocab import VOCABULARY_ENV


@pytest.fixture()
def indexed(tmp_path, tiny_clip, monkeypatch):
    """A library indexed with the tiny CLIP (not the default model), and a tag vocabulary of 3 rows."""
    from importlib import resources

    text = resources.files("glimpse.tagging").joinpath("data/vocab.tsv").read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line and not line.startswith("#")][:3]
    (tmp_path / "vocab.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.setenv(VOCABULARY_ENV, str(tmp_path / "vocab.tsv"))
    monkeypatch.delenv("GLIMPSE_MODEL", raising=False)
    photos = make_photos(tmp_path / "pics", 3)
    library = tmp_path / "lib"
    result = CliRunner().invoke(app, ["--library", str(library), "--model", str(tiny_clip), "index",
                                      str(tmp_path / "pics"), "--json"])
    assert result.exit_code == 0, result.output
    return library, photos


def test_tag_uses_the_library_model(indexed, tiny_clip):
    library, photos = indexed
    result = CliRunner().invoke(app, ["--library", str(library), "tag", str(photos[0]), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["source"] == f"clip:{load_spec(str(tiny_clip)).key}"


def test_bench_uses_the_library_model(indexed, tiny_clip, monkeypatch, tmp_path):
    import glimpse.bench

    measured: list[list[str]] = []
    monkeypatch.setattr(glimpse.bench, "bench_models", lambda models, *a, **k: measured.append(list(models)) or [])
    result = CliRunner().invoke(app, ["--library", str(indexed[0]), "bench", "--json"])
    assert result.exit_code == 0, result.output
    assert measured == [[str(tiny_clip.resolve())]]
    # no library: the default model, and no library is created to find that out
    result = CliRunner().invoke(app, ["--library", str(tmp_path / "none"), "bench", "--json"])
    assert result.exit_code == 0, result.output
    assert measured[-1] == [DEFAULT_MODEL] and not Path(tmp_path / "none").exists()


def test_classify_uses_the_library_model(indexed):
    library, photos = indexed
    result = CliRunner().invoke(app, ["--library", str(library), "classify", str(photos[1]), "--labels", "cat,dog",
                                      "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["label"] in {"cat", "dog"}
