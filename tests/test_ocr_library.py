"""OCR in the library: the catalog's text (schema v4, FTS5 trigram), indexing with --ocr, text and fused search.

The first part checks the catalog and the query rules on lines written through the catalog API (what is
stored is searched, deleted, moved and migrated exactly). The second runs the real OCR engine on images
rendered here with real fonts (Noto Sans CJK), through ``Library.index(..., ocr=True)`` and the CLI; it
skips where the OCR engine or its packages are not installed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from conftest import DROP_V5, kill_at_rows
from glimpse.catalog import SCHEMA_VERSION, Catalog, FileUpdate, OcrResult
from glimpse.errors import UserInputError
from glimpse.ocr.base import OcrLine
from glimpse.ocr.text_index import (
    MATCH_BOTH,
    MATCH_CLIP,
    MATCH_OCR,
    RRF_K,
    TextQuery,
    fuse,
    normalize_text,
    split_text_terms,
    text_terms,
)

FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
BOX = ((1.0, 2.0), (30.0, 2.0), (30.0, 12.0), (1.0, 12.0))


# -- the rules ------------------------------------------------------------------------------------------------
def test_normalisation_folds_width_case_and_spaces():
    assert normalize_text("ＥＸＩＴ") == normalize_text("Exit") == "exit"
    assert normalize_text("Fresh  Coffee") == normalize_text("FreshCoffee") == "freshcoffee"
    assert normalize_text("出口　处") == "出口处"  # the ideographic space goes too
    assert normalize_text("Straße") == "strasse"


def test_text_terms_in_queries():
    assert split_text_terms('text:"exit sign"') == ("", TextQuery(("exitsign",)))
    assert split_text_terms("receipt text:total") == ("receipt", TextQuery(("total",)))
    assert split_text_terms('TEXT:"say ""hi"""') == ("", TextQuery(('say"hi"',)))
    assert split_text_terms("context:x beach") == ("context:x beach", None)  # text: must start a word
    assert split_text_terms("text:exi*") == ("", TextQuery(("exi",)))  # a prefix is a substring
    assert text_terms(["ＴＯＴＡＬ", "12.50"]) == TextQuery(("total", "12.50"))
    for bad in ('text:""', "text:", 'text:"unclosed', "text:a*b"):
        with pytest.raises(UserInputError):
            split_text_terms(bad)
    with pytest.raises(UserInputError, match="empty text term"):
        text_terms(["  "])


def test_reciprocal_rank_fusion():
    fused = fuse([1, 2, 3], [3, 4], text_weight=1.0)
    # 2 and 4 tie (both rank 2 of one list): the CLIP order first
    assert [(i, m) for i, _, m in fused] == [(3, MATCH_BOTH), (1, MATCH_CLIP), (2, MATCH_CLIP), (4, MATCH_OCR)]
    assert fused[0][1] == pytest.approx(1 / (RRF_K + 3) + 1 / (RRF_K + 1))
    # weight 0: CLIP's order, text ignored; a large weight puts the text ranking first
    assert [i for i, _, _ in fuse([1, 2, 3], [3, 4], 0.0)] == [1, 2, 3]
    assert [i for i, _, _ in fuse([1, 2, 3], [3, 4], 10.0)][:2] == [3, 4]


# -- the catalog ----------------------------------------------------------------------------------------------
def _lines(*texts: str, confidence: float = 0.9) -> OcrResult:
    return OcrResult("engine:test", tuple(OcrLine(t, confidence, BOX) for t in texts))


def _write(catalog: Catalog, path: str, content: str, result: OcrResult | None = None) -> int:
    return catalog.apply([FileUpdate(path, 1, 1, "ok", content, ocr=result)], "model")[0]


def _fts_rows(catalog_path: Path) -> int:
    with sqlite3.connect(catalog_path) as db:
        db.execute("INSERT INTO ocr_fts (ocr_fts) VALUES ('integrity-check')")  # raises when out of step
        return db.execute("SELECT COUNT(*) FROM ocr_fts WHERE ocr_fts MATCH 'xit'").fetchone()[0]


def test_catalog_stores_lines_and_finds_them_in_both_scripts(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    exit_id = _write(catalog, "/p/exit.jpg", "h1", _lines("EMERGENCY EXIT", "出口处"))
    total_id = _write(catalog, "/p/receipt.jpg", "h2", _lines("FreshCoffee", "TOTAL 12.50"))
    blank_id = _write(catalog, "/p/blank.jpg", "h3", _lines())

    def found(query: str) -> list[int]:
        _, text = split_text_terms(query)
        assert text is not None
        return [m.file_id for m in catalog.text_matches(text)]

    assert found("text:exit") == [exit_id]  # a word inside a line
    assert found('text:"emergency exit"') == [exit_id]  # a phrase
    assert found("text:emerg*") == [exit_id]  # a prefix
    assert found("text:ＥＸＩＴ") == [exit_id]  # full-width query, half-width text
    assert found('text:"fresh coffee"') == [total_id]  # spaces dropped by the recogniser still match
    assert found("text:出口") == [exit_id]  # 2 characters: the substring scan
    assert found("text:出口处") == [exit_id]  # 3 characters: the trigram index
    assert found("text:12.5") == [total_id]
    assert found("text:exit text:total") == []  # every term must match
    assert found("text:nothing") == []
    match = catalog.text_matches(TextQuery(("total",)))[0]
    assert (match.line, match.line_no) == ("TOTAL 12.50", 1)  # the snippet is the line as recognised
    model_id, content, lines = catalog.ocr_text(exit_id)
    assert (model_id, content, [ln.text for ln in lines]) == ("engine:test", "h1", ["EMERGENCY EXIT", "出口处"])
    assert lines[0].box == BOX and lines[0].confidence == pytest.approx(0.9)
    assert catalog.ocr_text(blank_id)[2] == []  # read, no text: a record without lines
    assert catalog.ocr_fresh_ids("engine:test") == {exit_id, total_id, blank_id}
    assert catalog.ocr_fresh_ids("engine:other") == set()
    assert catalog.ocr_source("h2", "engine:test") == total_id and catalog.ocr_source("h2", "engine:other") is None
    assert catalog.ocr_counts() == {"images": 3, "with_text": 2, "lines": 4, "failed": 0}
    catalog.close()


def test_deletes_and_content_changes_drop_text_and_fts_rows(tmp_path):
    path = tmp_path / "catalog.sqlite3"
    catalog = Catalog(path)
    a = _write(catalog, "/p/a.jpg", "h1", _lines("EXIT"))
    b = _write(catalog, "/p/b.jpg", "h2", _lines("NEXIT"))
    assert _fts_rows(path) == 2
    catalog.delete_files([a])  # the file's delete cascades to its lines, the trigger to the FTS index
    assert _fts_rows(path) == 1 and [m.file_id for m in catalog.text_matches(TextQuery(("exit",)))] == [b]
    # new content without new text: the old text described other pixels and goes
    catalog.apply([FileUpdate("/p/b.jpg", 2, 2, "ok", "h2-new")], "model")
    assert catalog.ocr_text(b) is None and _fts_rows(path) == 0
    # a copy of known content gets the stored text copied (no second read)
    c = _write(catalog, "/p/c.jpg", "h3", _lines("出口"))
    d = catalog.apply([FileUpdate("/p/d.jpg", 1, 1, "ok", "h3", ocr_from=c)], "model")[0]
    assert catalog.ocr_text(d)[2] == catalog.ocr_text(c)[2]
    # a file that turned unreadable loses its text
    catalog.apply([FileUpdate("/p/c.jpg", 3, 3, "error", None, error="cannot decode")], "model")
    assert catalog.ocr_text(c) is None
    assert [m.file_id for m in catalog.text_matches(TextQuery(("出口",)))] == [d]
    catalog.close()


def test_a_move_keeps_the_text(tmp_path):
    catalog = Catalog(tmp_path / "catalog.sqlite3")
    a = _write(catalog, "/p/a.jpg", "h1", _lines("EXIT"))
    (moved,) = catalog.apply([FileUpdate("/q/a.jpg", 1, 1, "ok", "h1", move_from=a)], "model")
    assert moved == a and catalog.ocr_text(a)[2][0].text == "EXIT"
    assert catalog.file_by_path("/q/a.jpg").id == a
    catalog.close()


def test_migration_from_schema_3(tmp_path):
    path = tmp_path / "catalog.sqlite3"
    catalog = Catalog(path)
    catalog.add_root("/p")
    fid = catalog.apply([FileUpdate("/p/a.jpg", 1, 1, "ok", "h1")], "m")[0]
    catalog.close()
    with sqlite3.connect(path) as db:  # what a version-3 catalog is: no OCR tables
        db.executescript(DROP_V5 + "DROP TABLE ocr_fts; DROP TABLE ocr_lines; DROP TABLE ocr_done; "
                         "UPDATE meta SET value = '3' WHERE key = 'schema_version';")
    catalog = Catalog(path)
    assert catalog.schema_version == SCHEMA_VERSION == 6
    assert catalog.roots() == ["/p"] and catalog.file_by_path("/p/a.jpg").id == fid
    catalog.apply([FileUpdate("/p/a.jpg", 1, 1, "ok", "h1", ocr=_lines("出口处"))], "m")
    assert [m.file_id for m in catalog.text_matches(TextQuery(("出口处",)))] == [fid]
    catalog.close()


# -- the real engine ------------------------------------------------------------------------------------------
class CountingEngine:
    """The real engine, counting its calls (how many images it was asked to read)."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.calls = 0

    @property
    def model_id(self) -> str:
        return self.engine.model_id

    def read(self, image):
        self.calls += 1
        return self.engine.read(image)


@pytest.fixture(scope="session")
def real_engine():
    engine_module = pytest.importorskip("glimpse.ocr.engine")
    from glimpse.errors import FeatureUnavailableError

    if not FONT.is_file():
        pytest.skip(f"the font {FONT} is not installed")
    try:
        return engine_module.open_ocr_engine(threads=1)
    except (FeatureUnavailableError, ImportError) as exc:
        pytest.skip(f"the OCR engine is not available here: {exc}")


@pytest.fixture()
def engine(real_engine):
    return CountingEngine(real_engine)


def render(path: Path, text: str | None, size: tuple[int, int] = (520, 160), font_px: int = 56) -> Path:
    """A white image with ``text`` in black, Noto Sans CJK (a smooth colour field, no edges, when text is None)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if text is None:
        field = np.random.default_rng(7).integers(0, 256, (3, 4, 3), dtype=np.uint8)
        Image.fromarray(field, "RGB").resize(size, Image.Resampling.BICUBIC).save(path)
        return path
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text((24, (size[1] - font_px) // 2 - 8), text, fill="black",
                               font=ImageFont.truetype(str(FONT), font_px))
    image.save(path)
    return path


TEXTS = {"exit.png": "EMERGENCY EXIT", "chinese.png": "出口处", "receipt.png": "TOTAL 12.50", "photo.png": None}


@pytest.fixture()
def pics(tmp_path):
    folder = tmp_path / "pics"
    for name, text in TEXTS.items():
        render(folder / name, text)
    return folder


@pytest.fixture()
def ocr_lib(tmp_path, tiny_clip, engine):
    import glimpse.library

    lib = glimpse.library.Library(tmp_path / "library", str(tiny_clip), ocr_engine=engine)
    yield lib
    lib.close()


def _names(hits) -> list[str]:
    return [Path(h.path).name for h in hits]


def test_index_ocr_reads_every_image_once_and_search_finds_the_text(ocr_lib, engine, pics):
    report = ocr_lib.index([pics], ocr=True)
    assert (report.added, report.encoded, report.ocr_read, report.ocr_failed) == (4, 4, 4, 0)
    assert report.ocr_model == engine.model_id and engine.calls == 4
    texts = {name: [normalize_text(ln.text) for ln in ocr_lib.text_of(str(pics / name))] for name in TEXTS}
    assert "".join(texts["exit.png"]) == "emergencyexit"
    assert "".join(texts["chinese.png"]) == "出口处"
    assert "".join(texts["receipt.png"]) == "total12.50"
    assert texts["photo.png"] == []  # no text: read, nothing found, not an error
    (line,) = ocr_lib.text_of(str(pics / "receipt.png"))
    xs, ys = [x for x, _ in line.box], [y for _, y in line.box]
    assert 0 <= min(xs) < max(xs) <= 520 and 0 <= min(ys) < max(ys) <= 160  # full-image pixels

    assert _names(ocr_lib.search('text:"exit"')) == ["exit.png"]
    assert _names(ocr_lib.search('text:"emergency exit"')) == ["exit.png"]
    assert _names(ocr_lib.search("text:emerg*")) == ["exit.png"]
    assert _names(ocr_lib.search("text:ＥＸＩＴ")) == ["exit.png"]
    assert _names(ocr_lib.search("text:出口")) == ["chinese.png"]
    assert _names(ocr_lib.search("text:出口处")) == ["chinese.png"]
    (hit,) = ocr_lib.search("text:total")
    assert hit.match == MATCH_OCR and normalize_text(hit.snippet) == "total12.50"
    assert ocr_lib.search("text:nowhere") == []
    with pytest.raises(UserInputError):
        ocr_lib.search('text:""')


def test_fused_ranking_and_the_text_filter(ocr_lib, pics):
    ocr_lib.index([pics], ocr=True)
    for query, name in (("exit", "exit.png"), ("出口", "chinese.png")):
        hits = ocr_lib.search(query, k=4)
        assert _names(hits)[0] == name and hits[0].match == MATCH_BOTH and hits[0].snippet
        assert {h.match for h in hits[1:]} == {MATCH_CLIP} and all(h.snippet is None for h in hits[1:])
    # weight 0: CLIP alone, best cosine first
    clip_only = ocr_lib.search("exit", k=4, text_weight=0)
    assert [h.match for h in clip_only] == [MATCH_CLIP] * 4
    assert [h.score for h in clip_only] == sorted((h.score for h in clip_only), reverse=True)
    # --text: CLIP's ranking, only the images whose text matches
    (hit,) = ocr_lib.search("a photo", k=4, text="total")
    assert Path(hit.path).name == "receipt.png" and hit.match == MATCH_BOTH
    assert _names(ocr_lib.search("a photo text:exit", k=4)) == ["exit.png"]
    with pytest.raises(UserInputError, match="text-weight"):
        ocr_lib.search("exit", text_weight=-1)
    # the same through the vector door (the server embeds its queries itself) and the full-text door
    vector = ocr_lib.query_vector("exit")
    assert [(h.id, h.match) for h in ocr_lib.search_vector(vector, 4, fuse="exit")] == [
        (h.id, h.match) for h in ocr_lib.search("exit", k=4)]
    assert _names(ocr_lib.search_vector(vector, 4, text="total")) == ["receipt.png"]
    assert [h.id for h in ocr_lib.search_text("出口")] == [h.id for h in ocr_lib.search("text:出口")]


def test_re_runs_read_only_what_changed(ocr_lib, engine, pics, tmp_path):
    first = ocr_lib.index([pics])  # without OCR first
    assert first.encoded == 4 and engine.calls == 0
    report = ocr_lib.index([pics], ocr=True)  # the text of indexed images, without encoding them again
    assert (report.encoded, report.ocr_read, engine.calls) == (0, 4, 4)
    again = ocr_lib.index([pics], ocr=True)
    assert (again.encoded, again.ocr_read, engine.calls) == (0, 0, 4)  # nothing new: no call
    render(pics / "receipt.png", "TOTAL 99.00")
    os.utime(pics / "receipt.png", ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = ocr_lib.index([pics], ocr=True)
    assert (changed.encoded, changed.ocr_read, engine.calls) == (1, 1, 5)
    assert _names(ocr_lib.search("text:99.00")) == ["receipt.png"] and ocr_lib.search("text:12.50") == []
    # a copy of known content: the text is copied, not read
    (pics / "copy.png").write_bytes((pics / "exit.png").read_bytes())
    copied = ocr_lib.index([pics], ocr=True)
    assert (copied.ocr_copied, copied.ocr_read, engine.calls) == (1, 0, 5)
    assert sorted(_names(ocr_lib.search("text:exit"))) == ["copy.png", "exit.png"]
    # lib.ocr: stored lines for an unchanged file, a fresh read for one outside the library
    assert ocr_lib.ocr(pics / "exit.png") == ocr_lib.text_of(str(pics / "exit.png")) and engine.calls == 5
    twin = tmp_path / "elsewhere" / "twin.png"  # outside the library, with content the library has read
    twin.parent.mkdir()
    twin.write_bytes((pics / "exit.png").read_bytes())
    assert ocr_lib.ocr(twin) == ocr_lib.text_of(str(pics / "exit.png")) and engine.calls == 5
    outside = render(tmp_path / "elsewhere" / "sign.png", "出口")
    assert "".join(normalize_text(ln.text) for ln in ocr_lib.ocr(outside)) == "出口" and engine.calls == 6


class FailingOn(CountingEngine):
    """The real engine, made to raise on images ``width`` pixels wide (an engine bug met by one image)."""

    def __init__(self, engine, width: int) -> None:
        super().__init__(engine)
        self.width = width

    def read(self, image):
        self.calls += 1
        if image.width == self.width:
            raise RuntimeError("the detector tripped")
        return self.engine.read(image)


def test_a_failed_read_is_reported_kept_and_not_retried(tmp_path, tiny_clip, real_engine, pics):
    import glimpse.library

    render(pics / "odd.png", "ODD", size=(333, 120))
    engine = FailingOn(real_engine, 333)
    with glimpse.library.Library(tmp_path / "library", str(tiny_clip), ocr_engine=engine) as lib:
        report = lib.index([pics], ocr=True)
        assert (report.added, report.encoded, report.ocr_read, report.ocr_failed, report.failed) == (5, 5, 4, 1, 0)
        assert [(Path(p).name, r) for p, r in report.errors] == [
            ("odd.png", "text recognition failed: RuntimeError: the detector tripped")]
        assert lib.text_of(str(pics / "odd.png")) is None and lib.status().ocr["failed"] == 1
        again = lib.index([pics], ocr=True)  # the verdict holds for this content and model
        assert (again.ocr_read, again.ocr_failed, engine.calls) == (0, 0, 5)
        render(pics / "odd.png", "ODD", size=(334, 120))  # new content: read again
        os.utime(pics / "odd.png", ns=(time.time_ns(), time.time_ns() + 10**9))
        fixed = lib.index([pics], ocr=True)
        assert (fixed.ocr_read, fixed.ocr_failed, lib.status().ocr["failed"]) == (1, 0, 0)
        assert _names(lib.search("text:odd")) == ["odd.png"]


def test_remove_and_move_keep_the_text_consistent(ocr_lib, engine, pics, tmp_path):
    ocr_lib.index([pics], ocr=True)
    exit_id = ocr_lib.search("text:exit")[0].id
    (pics / "signs").mkdir()
    os.rename(pics / "exit.png", pics / "signs" / "exit.png")
    report = ocr_lib.index([pics], ocr=True)
    assert (report.moved, report.ocr_read, engine.calls) == (1, 0, 4)  # a move keeps id, vector and text
    (hit,) = ocr_lib.search("text:exit")
    assert hit.id == exit_id and hit.path.endswith("signs/exit.png")
    assert ocr_lib.remove([pics / "signs"]) == 1
    assert ocr_lib.search("text:exit") == [] and ocr_lib.text_of(exit_id) is None
    assert _fts_rows(ocr_lib.directory / "catalog.sqlite3") == 0  # the FTS rows went with the file


def test_a_v3_library_migrates_and_gets_its_text(tmp_path, tiny_clip, engine, pics):
    import glimpse.library

    with glimpse.library.Library(tmp_path / "library", str(tiny_clip)) as lib:
        lib.index([pics])
    path = tmp_path / "library" / "catalog.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(DROP_V5 + "DROP TABLE ocr_fts; DROP TABLE ocr_lines; DROP TABLE ocr_done; "
                         "UPDATE meta SET value = '3' WHERE key = 'schema_version';")
    with glimpse.library.Library(tmp_path / "library", str(tiny_clip), ocr_engine=engine) as lib:
        assert lib.catalog.schema_version == 6
        report = lib.index([pics], ocr=True)
        assert (report.unchanged, report.encoded, report.ocr_read) == (0, 0, 4)
        assert _names(lib.search("text:出口处")) == ["chinese.png"]


@pytest.mark.parametrize("store", ["faiss", "milvus"])
@pytest.mark.parametrize("exact_limit", [20000, 0])
def test_text_filter_and_fusion_with_each_store(tmp_path, tiny_clip, engine, pics, store, exact_limit, monkeypatch):
    import glimpse.library

    if store == "milvus":
        pytest.importorskip("pymilvus")
        pytest.importorskip("milvus_lite")
    # exact_limit 0: the text filter goes through the store's search (widened until enough hits pass)
    monkeypatch.setattr(glimpse.library, "EXACT_FILTER_LIMIT", exact_limit)
    uri = str(tmp_path / "vectors.db") if store == "milvus" else None
    with glimpse.library.Library(tmp_path / "library", str(tiny_clip), store=uri, ocr_engine=engine) as lib:
        lib.index([pics], ocr=True)
        clip_order = [h.id for h in lib.search("a sign", k=4, text_weight=0)]
        (hit,) = lib.search("a sign", k=4, text="exit")
        assert Path(hit.path).name == "exit.png" and hit.match == MATCH_BOTH
        both = lib.search("a sign", k=4, text=["e"])  # "e" is in EMERGENCY EXIT only (TOTAL has none)
        assert _names(both) == ["exit.png"]
        fused = lib.search("出口", k=4)
        assert _names(fused)[0] == "chinese.png" and [h.id for h in fused[1:]] == [
            i for i in clip_order if i != fused[0].id]


# -- the CLI --------------------------------------------------------------------------------------------------
def test_cli_index_ocr_search_json(tmp_path, tiny_clip, real_engine, pics):
    from typer.testing import CliRunner

    from glimpse.cli import app

    runner = CliRunner()
    base = ["--library", str(tmp_path / "lib"), "--model", str(tiny_clip)]
    result = runner.invoke(app, [*base, "index", str(pics), "--ocr", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ocr_read"] == 4 and report["ocr_model"] == real_engine.model_id

    result = runner.invoke(app, [*base, "search", 'text:"exit"', "--json"])
    assert result.exit_code == 0, result.output
    (hit,) = json.loads(result.stdout)
    assert hit["match"] == "ocr" and normalize_text(hit["snippet"]) == "emergencyexit"
    assert Path(hit["path"]).name == "exit.png"

    result = runner.invoke(app, [*base, "search", "a photo", "--text", "total", "--json"])
    assert result.exit_code == 0, result.output
    assert [(Path(h["path"]).name, h["match"]) for h in json.loads(result.stdout)] == [("receipt.png", "both")]

    result = runner.invoke(app, [*base, "search", "exit", "--text-weight", "2", "-k", "2"])
    assert result.exit_code == 0, result.output
    assert "exit.png  [both: " in result.stdout.splitlines()[0]  # the reason and the matched line

    result = runner.invoke(app, [*base, "ocr", str(pics / "receipt.png"), str(pics / "photo.png"), "--json"])
    assert result.exit_code == 0, result.output
    receipt, photo = json.loads(result.stdout)
    assert photo["lines"] == [] and [ln["order"] for ln in receipt["lines"]] == [1]
    assert normalize_text(receipt["lines"][0]["text"]) == "total12.50"
    assert len(receipt["lines"][0]["box"]) == 4 and 0 < receipt["lines"][0]["confidence"] <= 1

    result = runner.invoke(app, ["--library", str(tmp_path / "lib"), "ocr", str(pics / "photo.png")])
    assert result.exit_code == 0 and "no text found" in result.stdout
    # no library at all: the images are read all the same, and no library is created
    result = runner.invoke(app, ["ocr", str(pics / "chinese.png")], env={"XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert result.exit_code == 0, result.output
    assert "出口处" in result.stdout.replace(" ", "") and not (tmp_path / "xdg" / "glimpse").exists()
    result = runner.invoke(app, ["--library", str(tmp_path / "nowhere"), "ocr", str(pics / "chinese.png")])
    assert result.exit_code == 1 and "no library at" in result.output

    result = runner.invoke(app, [*base, "status", "--json"])
    counts = json.loads(result.stdout)["ocr"]
    assert result.exit_code == 0 and (counts["images"], counts["with_text"]) == (4, 3) and counts["lines"] >= 3
    result = runner.invoke(app, [*base, "index", str(pics), "--ocr", "--engine", "ray"])
    assert result.exit_code == 1 and "--engine local only" in result.output

    result = runner.invoke(app, [*base, "search", "text:"])
    assert result.exit_code == 1 and "empty text term" in result.output

    # a library without text says how to get it
    runner.invoke(app, ["--library", str(tmp_path / "plain"), "--model", str(tiny_clip), "index", str(pics)])
    result = runner.invoke(app, ["--library", str(tmp_path / "plain"), "search", "text:exit"])
    assert result.exit_code == 1 and "index --ocr" in result.output


# -- kill -9 ---------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_kill_9_during_index_ocr_loses_nothing(tmp_path, tiny_clip, real_engine):
    pics = tmp_path / "pics"
    words = ["EXIT", "TOTAL", "出口", "入口处", "OPEN", "CAFE", "北京", "SALE", "上海市", "PUSH"]
    for n, word in enumerate(words):
        render(pics / f"img_{n:02d}.png", word, size=(360, 120), font_px=48)
    library = tmp_path / "lib"
    catalog_path = library / "catalog.sqlite3"
    cmd = [sys.executable, "-m", "glimpse", "--library", str(library), "--model", str(tiny_clip), "index",
           str(pics), "--ocr", "--batch-size", "2", "--workers", "2", "--json"]
    kills = sum(kill_at_rows(cmd, catalog_path, "ocr_done", target) for target in (1, 4, 7))
    assert kills >= 2, "the indexer finished before it could be killed"
    final = subprocess.run(cmd, capture_output=True, timeout=600)
    assert final.returncode == 0, final.stderr.decode()
    catalog = Catalog(catalog_path)
    try:
        assert catalog.integrity_check() == ["ok"]
        records = catalog.files_under(str(pics.resolve()))
        assert len(records) == len(words) and catalog.ocr_fresh_ids(real_engine.model_id) == {
            r.id for r in records.values()}
        from glimpse.pipeline import ocr_file

        for name, rec in records.items():
            # each image's text is stored once and equals what the engine reads in it
            assert [ln.text for ln in catalog.ocr_text(rec.id)[2]] == [ln.text for ln in ocr_file(name, real_engine)]
        assert catalog.ocr_counts()["images"] == len(words)
        (model,) = catalog.models()
        assert model["embeddings"] == len(words)
    finally:
        catalog.close()
    _fts_rows(catalog_path)  # the FTS index is in step with the lines (its integrity-check raises otherwise)
