"""The CLI contract: commands, --json shapes, exit codes (0 ok, 1 user error, 2 usage error)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import make_photos
from glimpse.cli import app


@pytest.fixture()
def run(tmp_path, tiny_clip):
    runner = CliRunner()

    def _run(*args: str, model: bool = True):
        base = ["--library", str(tmp_path / "lib")] + (["--model", str(tiny_clip)] if model else [])
        return runner.invoke(app, [*base, *args])

    return _run


def test_index_search_similar_status_remove(run, tmp_path):
    photos = make_photos(tmp_path / "pics", 6)
    result = run("index", str(tmp_path / "pics"), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["added"] == 6 and report["failed"] == 0

    result = run("search", "red car", "--json", "-k", "3")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert len(hits) == 3 and {"path", "score", "id"} <= set(hits[0])
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]

    # the library remembers its model: no --model needed afterwards
    result = run("similar", str(photos[2]), "-k", "2", "--json", model=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["path"] == str(photos[2])

    result = run("search", "beach +sunset -people")
    assert result.exit_code == 0 and len(result.stdout.strip().splitlines()) == 6

    result = run("status", "--json")
    status = json.loads(result.stdout)
    assert status["images"] == 6 and status["index_vectors"] == 6
    assert status["roots"] == [str((tmp_path / "pics").resolve())]

    result = run("remove", str(tmp_path / "pics"), "--json")
    assert json.loads(result.stdout) == {"removed": 6}


def test_user_errors_exit_1_with_message(run, tmp_path):
    result = run("index", str(tmp_path / "missing"))
    assert result.exit_code == 1
    assert "does not exist" in result.stderr

    (tmp_path / "pics").mkdir()
    result = run("search", "cat")
    assert result.exit_code == 1 and "glimpse" in result.stderr and "index PATH" in result.stderr

    result = run("search", "--", "-people")
    assert result.exit_code == 1 and "only negative terms" in result.stderr


def test_missing_model_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["--library", str(tmp_path / "lib"), "--model", "no-such-org/no-such-model",
                                      "index", str(tmp_path)])
    assert result.exit_code == 1
    assert "no-such-org/no-such-model" in result.stderr
    assert "--model" in result.stderr or "offline" in result.stderr


def test_usage_error_exit_2(run):
    result = run("search", "cat", "-k", "0")
    assert result.exit_code == 2
    result = run("no-such-command")
    assert result.exit_code == 2


def test_models_list_json(run):
    result = run("models", "list", "--json", model=False)
    assert result.exit_code == 0, result.output
    names = {m["name"] for m in json.loads(result.stdout)}
    assert {"openai/clip-vit-base-patch32", "OFA-Sys/chinese-clip-vit-base-patch16",
            "google/siglip-base-patch16-224"} <= names


def test_failure_reasons_are_printed_verbatim(run, tmp_path):
    # reasons may contain [brackets] (e.g. glimpse[heic]); they must not be eaten as console markup
    pics = tmp_path / "pics"
    make_photos(pics, 1)
    (pics / "broken.jpg").write_bytes(b"")
    (pics / "phone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    result = run("index", str(pics))
    assert result.exit_code == 0, result.output
    assert "broken.jpg: empty file" in result.stderr
    assert "phone.heic" in result.stderr
    assert "glimpse[heic]" in result.stderr or "HEIF" in result.stderr


def test_similar_to_a_non_image_names_the_file(run, tmp_path):
    make_photos(tmp_path / "pics", 2)
    assert run("index", str(tmp_path / "pics")).exit_code == 0
    notes = tmp_path / "notes.txt"
    notes.write_text("just text")
    result = run("similar", str(notes))
    assert result.exit_code == 1
    assert f"{notes}: not an image" in result.stderr
