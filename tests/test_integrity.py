"""Integrity of the catalog and the library's doors ([J]): vectors of several models side by side, failed
files retried under new settings, SQLite failures as one clear line (damaged page, full disk, read-only
library), up-front validation of filters and options, and libraries whose model folder has moved."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import DROP_V5, make_photo, make_photos
from glimpse.catalog import CATALOG_FILENAME
from glimpse.cli import app
from glimpse.errors import CatalogError, LibraryNotFoundError, ModelNotFoundError, ReadOnlyLibraryError, UserInputError


def cli(library: Path, model: Path | None, *args: str):
    base = ["--library", str(library)] + (["--model", str(model)] if model else [])
    return CliRunner().invoke(app, [*base, *args])


# -- 1. one model's run never drops another model's vectors ------------------------------------------------
def test_a_second_model_keeps_the_first_models_vectors(open_lib, tiny_clip, tiny_clip_b, tmp_path):
    pics = tmp_path / "pics"
    photos = make_photos(pics, 6)
    first = open_lib()
    first.index([pics])
    second = open_lib(tiny_clip_b)
    report_b = second.index([pics])
    assert report_b.encoded == 6
    key_a, key_b = first.spec.key, second.spec.key
    assert first.catalog.count_embeddings(key_a) == 6  # B's run kept A's vectors of the unchanged files
    again = first.index([pics])
    assert (again.encoded, again.unchanged) == (0, 6)
    assert second.index([pics]).encoded == 0
    assert first.similar(photos[2], k=1)[0].path == str(photos[2])

    make_photo(photos[0], seed=1000)  # new content: only now do the other model's vectors of it go
    os.utime(photos[0], ns=(10**18, 10**18))
    assert first.index([pics]).encoded == 1
    assert first.catalog.count_embeddings(key_a) == 6
    assert second.catalog.count_embeddings(key_b) == 5
    assert second.index([pics]).encoded == 1
    assert second.similar(photos[0], k=1)[0].path == str(photos[0])


# -- 6. a verdict is retried when the settings that produced it change ---------------------------------------
def test_a_failed_file_is_retried_when_the_limit_is_raised(open_lib, tmp_path, monkeypatch):
    pics = tmp_path / "pics"
    make_photo(pics / "big.jpg", seed=3, size=(400, 300))  # 0.12 MP
    lib = open_lib()
    first = lib.index([pics], max_megapixels=0.05)
    assert first.failed == 1 and "0.05 MP limit" in first.errors[0][1]
    same = lib.index([pics], max_megapixels=0.05)
    assert (same.unchanged, same.failed, same.encoded) == (1, 0, 0)  # same settings: the verdict stands
    raised = lib.index([pics], max_megapixels=1)
    assert (raised.encoded, raised.failed) == (1, 0)
    assert lib.catalog.counts()["error"] == 0

    # A new glimpse version retries old verdicts too (it may read what the old one could not).
    (pics / "notes.jpg").write_text("not a picture")
    assert lib.index([pics]).failed == 1
    assert lib.index([pics]).unchanged == 2
    import glimpse

    monkeypatch.setattr(glimpse, "__version__", "999.0")
    retried = lib.index([pics])
    assert (retried.failed, retried.unchanged) == (1, 1)


def test_the_trial_settings_are_worked_out_only_when_a_verdict_needs_them(open_lib, tmp_path, monkeypatch):
    """Learning whether rawpy and PyAV import costs ~65 ms before a run's first decode: a run of good photos
    never asks, a failure asks once and stores the answer."""
    from glimpse import pipeline

    calls: list[float] = []
    real = pipeline.trial_settings

    def counting(max_megapixels: float) -> str:
        calls.append(max_megapixels)
        return real(max_megapixels)

    monkeypatch.setattr(pipeline, "trial_settings", counting)
    pics = tmp_path / "pics"
    make_photos(pics, 3)
    lib = open_lib()
    assert lib.index([pics]).encoded == 3 and calls == []
    (pics / "notes.jpg").write_text("not a picture")
    (pics / "more.jpg").write_text("not one either")
    assert lib.index([pics]).failed == 2 and calls == [pipeline.DEFAULT_MAX_MEGAPIXELS]
    stored = {r.tried_with for r in lib.catalog.files_under(str(pics.resolve())).values() if r.state == "error"}
    assert stored == {real(pipeline.DEFAULT_MAX_MEGAPIXELS)}
    calls.clear()
    assert lib.index([pics]).unchanged == 5 and calls == [pipeline.DEFAULT_MAX_MEGAPIXELS]  # once, to compare


def test_migration_to_schema_3_keeps_rows_and_retries_old_verdicts(tmp_path):
    from glimpse.catalog import SCHEMA_VERSION, Catalog

    path = tmp_path / "catalog.sqlite3"
    Catalog(path).add_root("/photos")
    with sqlite3.connect(path) as db:
        db.executescript(DROP_V5 + "DROP TABLE ocr_fts; DROP TABLE ocr_lines; DROP TABLE ocr_done; "
                         "ALTER TABLE files DROP COLUMN tried_with; UPDATE meta SET value = '2' WHERE key = "
                         "'schema_version';")
    catalog = Catalog(path)
    assert catalog.schema_version == SCHEMA_VERSION == 6 and catalog.roots() == ["/photos"]
    catalog.close()


# -- 5. SQLite failures: one clear line, advice that fits the cause ------------------------------------------
def _damage_pages(catalog: Path) -> None:
    """Overwrite every page but the first (the header) with garbage, as a failing disk would."""
    page = 4096
    size = catalog.stat().st_size
    with catalog.open("r+b") as fh:
        for offset in range(page, size, page):
            fh.seek(offset)
            fh.write(bytes([0xA5]) * page)


def test_a_damaged_catalog_gives_one_line_with_recovery_advice(open_lib, tiny_clip, tmp_path):
    make_photos(tmp_path / "pics", 3)
    lib = open_lib()
    lib.index([tmp_path / "pics"])
    lib.close()
    catalog = tmp_path / "library" / CATALOG_FILENAME
    assert not Path(f"{catalog}-wal").exists() or Path(f"{catalog}-wal").stat().st_size == 0
    _damage_pages(catalog)
    for args in (["status"], ["search", "a dog"], ["index", str(tmp_path / "pics")]):
        result = cli(tmp_path / "library", tiny_clip, *args)
        assert result.exit_code == 1, (args, result.output)
        assert "is damaged" in result.output and ".recover" in result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_a_full_disk_stops_cleanly_and_a_rerun_finishes(open_lib, tmp_path):
    pics = tmp_path / "pics"
    make_photos(pics, 2)
    lib = open_lib()
    lib.index([pics])
    make_photos(pics, 60, start=2)
    # SQLite's page cap is how a full disk looks to it: SQLITE_FULL at the next page it needs.
    pages = lib.catalog._db.execute("PRAGMA page_count").fetchone()[0]
    lib.catalog._db.execute(f"PRAGMA max_page_count = {pages + 1}")
    with pytest.raises(CatalogError, match="is full"):
        lib.index([pics], batch_size=4)
    lib.close()
    assert not list((tmp_path / "library").rglob("*.tmp"))
    with sqlite3.connect(tmp_path / "library" / CATALOG_FILENAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    again = open_lib()
    report = again.index([pics])
    assert again.catalog.counts()["ok"] == 62 and report.failed == 0
    assert len(again.search("anything", k=100)) == 62


def _read_only_run(library: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m glimpse --library LIBRARY ARGS`` with the library on a read-only file system.

    As root, permissions do not stop writes, so the library folder is bind-mounted read-only inside a user
    and mount namespace (``unshare``); as another user, write permission is taken away instead.
    """
    cmd = [sys.executable, "-m", "glimpse", "--library", str(library), *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", str(library)], check=True)
        try:
            return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        finally:
            subprocess.run(["chmod", "-R", "u+w", str(library)], check=True)
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh",
                           str(library), *cmd], capture_output=True, text=True, env=env, timeout=300)


def _can_mount_read_only(tmp_path: Path) -> bool:
    if os.geteuid() != 0:
        return True
    probe = tmp_path / "ro-probe"
    probe.mkdir()
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && ! touch "$1/x" 2>/dev/null'
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh",
                           str(probe)], capture_output=True).returncode == 0


def test_a_read_only_library_can_be_searched_and_says_why_it_cannot_index(open_lib, tiny_clip, tmp_path):
    if not _can_mount_read_only(tmp_path):
        pytest.skip("no way to make a read-only file system here (needs unshare with user namespaces)")
    photos = make_photos(tmp_path / "pics", 4)
    lib = open_lib()
    lib.index([tmp_path / "pics"])
    lib.close()
    library = tmp_path / "library"
    found = _read_only_run(library, "--model", str(tiny_clip), "similar", str(photos[1]), "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["path"] == str(photos[1])
    status = _read_only_run(library, "status")
    assert status.returncode == 0 and "4 indexed" in status.stdout, status.stderr
    refused = _read_only_run(library, "--model", str(tiny_clip), "index", str(tmp_path / "pics"))
    assert refused.returncode == 1
    assert "read-only" in refused.stderr and "searching works" in refused.stderr
    assert "Traceback" not in refused.stderr and "move" not in refused.stderr


def test_writing_a_read_only_library_is_refused_up_front(open_lib, tmp_path, monkeypatch):
    make_photos(tmp_path / "pics", 2)
    lib = open_lib()
    lib.index([tmp_path / "pics"])
    lib.close()
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: mode != os.W_OK)  # how a read-only mount looks
    ro = open_lib()
    assert not ro.writable
    assert len(ro.search("x", k=5)) == 2
    for write in (lambda: ro.index([tmp_path / "pics"]), lambda: ro.remove([tmp_path / "pics"]), ro.rebuild_index):
        with pytest.raises(ReadOnlyLibraryError, match="searching works"):
            write()


# -- 16. up-front validation ------------------------------------------------------------------------------
def test_bad_options_and_filters_are_refused_before_any_work(open_lib, tiny_clip, tmp_path):
    pics = tmp_path / "pics"
    make_photos(pics, 3)
    lib = open_lib()
    with pytest.raises(UserInputError, match="max_megapixels must be a positive number"):
        lib.index([pics], max_megapixels=-1)
    assert lib.catalog.roots() == [] and lib.catalog.counts()["error"] == 0
    result = cli(tmp_path / "library", tiny_clip, "index", str(pics), "--max-megapixels", "-1")
    assert result.exit_code in (1, 2) and "Traceback" not in result.output
    assert lib.catalog.counts()["error"] == 0

    lib.index([pics])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(UserInputError, match="not an indexed folder"):
        lib.search("x", folder=elsewhere)
    assert len(lib.search("x", folder=pics)) == 3
    assert len(lib.search("x", folder=tmp_path)) == 3  # a folder holding a root is fine

    with pytest.raises(UserInputError, match="no image in this library has tags yet"):
        lib.search("x", tags=["dog"])
    (first, *_), _ = lib.catalog.embeddings(lib.spec.key)
    record = lib.catalog.files_by_id([int(first)])[int(first)]
    lib.catalog.put_tags([(record.id, record.hash, [("dog", 0.9)])], "clip:test")
    with pytest.raises(UserInputError, match=r"'dgo' \(did you mean 'dog'\?\)"):
        lib.search("x", tags=["dgo"])
    with pytest.raises(UserInputError, match="'cat'"):
        lib.search("x", no_tags=["cat"])
    assert [h.id for h in lib.search("x", tags=["DOG"])] == [record.id]


def test_reading_commands_do_not_create_a_library_at_a_mistyped_path(tiny_clip, tmp_path):
    typo = tmp_path / "librray"
    for args in (["search", "a dog"], ["status"], ["similar", "1"], ["dupes"], ["tags"]):
        result = cli(typo, tiny_clip, *args)
        assert result.exit_code == 1, (args, result.output)
        assert f"no library at {typo}" in result.output
    assert not typo.exists()
    with pytest.raises(LibraryNotFoundError):
        import glimpse

        glimpse.open_library(typo, create=False)


# -- 17. a library whose model folder moved ---------------------------------------------------------------
def test_stored_vector_commands_work_when_the_model_folder_moved(open_lib, tiny_clip, tmp_path):
    model = tmp_path / "models" / "mine"
    shutil.copytree(tiny_clip, model)
    photos = make_photos(tmp_path / "pics", 5)
    lib = open_lib(model)
    lib.index([tmp_path / "pics"])
    target = lib.catalog.file_by_path(str(photos[3]))
    lib.close()
    model.rename(tmp_path / "models" / "moved")

    import glimpse

    moved = glimpse.open_library(tmp_path / "library")  # the library remembers its model by the old path
    assert moved.similar(target.id, k=1)[0].id == target.id
    assert moved.status().vectors == 5
    with pytest.raises(ModelNotFoundError, match=f"no longer where it was \\({model}\\).*--model"):
        moved.search("a dog")
    result = cli(tmp_path / "library", None, "dupes", "--level", "semantic", "--json")
    assert result.exit_code == 0, result.output
    result = cli(tmp_path / "library", None, "search", "a dog")
    assert result.exit_code == 1 and str(model) in result.output and "--model" in result.output
    assert cli(tmp_path / "library", tmp_path / "models" / "moved", "search", "a dog").exit_code == 0
    moved.close()


def test_searching_with_a_model_that_covers_part_of_the_library_says_so(open_lib, tiny_clip_b, tmp_path, caplog):
    make_photos(tmp_path / "pics" / "a", 4)
    make_photos(tmp_path / "pics" / "b", 2, start=10)
    open_lib().index([tmp_path / "pics"])
    partial = open_lib(tiny_clip_b)
    partial.index([tmp_path / "pics" / "b"])
    with caplog.at_level(logging.WARNING, logger="glimpse"):
        assert len(partial.search("x", k=10)) == 2
        partial.search("y", k=10)
    notes = [r.getMessage() for r in caplog.records if "has vectors of" in r.getMessage()]
    assert len(notes) == 1 and "2 of the 6 images" in notes[0]
