"""The server and page with the images' text (OCR) and capture metadata: text: queries, snippets, the detail view's
lines and boxes, /api/images/{id}/text, date and camera filters — real OCR engine, real browser."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image, ImageDraw, ImageFont

pytest.importorskip("fastapi")
pytest.importorskip("glimpse.ocr.engine")

from server_harness import browser_page, call, get_json, serve
from test_metadata import photo_exif

FONT = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")


def sign(path: Path, text: str, **exif) -> Path:
    image = Image.new("RGB", (520, 160), "white")
    ImageDraw.Draw(image).text((24, 40), text, fill="black", font=ImageFont.truetype(str(FONT), 56))
    image.save(path, "JPEG", quality=95, exif=photo_exif(**exif))
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_clip):
    if not FONT.is_file():
        pytest.skip(f"the font {FONT} is not installed")
    import glimpse
    from glimpse.server.app import create_app
    from glimpse.settings import LibrarySettings

    base = tmp_path_factory.mktemp("text-meta")
    root = base / "root"
    root.mkdir()
    sign(root / "exit.jpg", "EMERGENCY EXIT", taken="2023:06:01 10:00:00", make="Apple", model="iPhone 13")
    sign(root / "total.jpg", "TOTAL 12.50", taken="2024:03:05 18:30:00", make="Canon", model="Canon EOS R5")
    sign(root / "chinese.jpg", "出口处", taken="2022:01:02 08:00:00", make="SONY", model="ILCE-7M4")
    with glimpse.open_library(base / "lib", model=str(tiny_clip)) as lib:
        report = lib.index([root], ocr=True)
        assert report.ocr_read == 3
    app = serve(create_app(LibrarySettings(base / "lib", str(tiny_clip))))
    yield app, root
    app.stop()


def names(results) -> list[str]:
    return [r["name"] for r in results]


def test_text_queries_snippets_and_text_route(served):
    app, _ = served
    found = get_json(app, '/api/search?q=text:"exit"')["results"]
    assert names(found) == ["exit.jpg"] and found[0]["match"] == "ocr" and "EXIT" in found[0]["snippet"]
    assert names(get_json(app, "/api/search?q=" + quote("text:出口"))["results"]) == ["chinese.jpg"]
    fused = get_json(app, "/api/search?q=total&k=3")["results"]
    assert fused[0]["name"] == "total.jpg" and fused[0]["match"] in ("ocr", "both")
    filtered = get_json(app, '/api/search?q=a+sign+text:"total"')["results"]
    assert names(filtered) == ["total.jpg"] and filtered[0]["match"] == "both"
    text = get_json(app, f"/api/images/{found[0]['id']}/text")
    assert [line["text"] for line in text["lines"]] == ["EMERGENCY EXIT"]
    assert len(text["lines"][0]["box"]) == 4 and 0 < text["lines"][0]["confidence"] <= 1
    assert call(app, "GET", "/api/images/999999/text").status == 404


def test_metadata_filters_sort_and_fields(served):
    app, _ = served
    everything = get_json(app, "/api/search?q=a+photo&k=10")["results"]
    assert len(everything) == 3 and all(r["meta"]["taken_source"] == "exif" for r in everything)
    assert names(get_json(app, "/api/search?q=a+photo&k=10&camera=canon")["results"]) == ["total.jpg"]
    assert set(names(get_json(app, "/api/search?q=a+photo&k=10&after=2023&before=2024-06")["results"])) == {
        "exit.jpg", "total.jpg"}
    assert names(get_json(app, "/api/search?q=a+photo&k=10&sort=date")["results"]) == [
        "total.jpg", "exit.jpg", "chinese.jpg"]
    info = get_json(app, f"/api/images/{everything[0]['id']}")
    assert info["meta"]["camera"] in ("Apple iPhone 13", "Canon EOS R5", "SONY ILCE-7M4")
    bad = call(app, "GET", "/api/search?q=a+photo&after=2023-13")
    assert bad.status == 400 and "after" in bad.json()["error"]


def test_the_page_shows_text_boxes_and_filters(served):
    app, _ = served
    with browser_page(app.url + "/") as (page, errors):
        page.fill("#q", 'text:"exit"')
        page.wait_for_selector("#results .hit .snippet")
        assert page.locator("#results .hit").count() == 1
        assert "EXIT" in page.inner_text("#results .hit .snippet")
        page.click("#results .hit")
        page.wait_for_selector("#viewer[open]")
        page.wait_for_selector("#viewer-text li")
        assert page.inner_text("#viewer-text") == "EMERGENCY EXIT"
        assert page.locator("#viewer-boxes polygon").count() == 1
        assert page.get_attribute("#viewer-boxes", "viewBox") == "0 0 520 160"
        assert "2023-06-01 10:00:00" in page.inner_text("#viewer-taken")
        assert page.inner_text("#viewer-camera") == "Apple iPhone 13"
        page.keyboard.press("Escape")
        page.fill("#q", "a photo")
        page.wait_for_function("document.querySelectorAll('#results .hit').length === 3")
        page.fill("#camera", "sony")
        page.dispatch_event("#camera", "change")
        page.wait_for_function("document.querySelectorAll('#results .hit').length === 1")
        assert "chinese.jpg" in page.inner_text("#results")
        assert not errors, errors
