"""The search page in a real browser: headless Debian chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

from server_harness import GUARDED_OPTIONS, TOKEN, session_server  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield chromium
        chromium.close()


def test_search_open_more_like_this_and_search_by_image(browser, server, fx):
    # bypass_csp: the page forbids eval, which Playwright's wait_for_function uses; the app is unchanged.
    page = browser.new_page(viewport={"width": 1100, "height": 800}, bypass_csp=True)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/")
    page.wait_for_selector("#status-line:has-text('images')")
    assert page.inner_text("#status-line").startswith("13 images")  # 12 photos + the symlink (never served)
    for hidden in ("#login", "#job"):
        assert page.locator(hidden).is_hidden(), hidden
    page.wait_for_selector("#tag-filter", state="visible")  # tags are always available (no wait for /api/tags)

    # Typing searches by itself (debounced): no Enter needed; the URL follows.
    page.fill("#q", "a red car")
    page.wait_for_url("**/?q=a+red+car")
    page.wait_for_selector("#message:has-text('12 results')")
    hits = page.locator("#results .hit")
    assert hits.count() == 12
    alts = page.eval_on_selector_all("#results img", "imgs => imgs.map(i => i.alt)")
    assert all(alt for alt in alts)
    page.wait_for_function("[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth)")

    # Keyboard: focus the first result and press Enter to open the large view.
    first_id = int(hits.first.get_attribute("data-id"))
    hits.first.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#viewer[open]")
    assert page.inner_text("#viewer-path").startswith(str(fx.root))
    page.wait_for_function("document.getElementById('viewer-image').naturalWidth > 0")

    # More like this: the image itself comes first, labelled by its file name (in the note and the box).
    first_name = page.inner_text("#viewer-title")
    page.click("#more-like-this")
    page.wait_for_function(f"document.querySelector('#results .hit')?.dataset.id === '{first_id}'")
    assert not page.locator("#viewer[open]").count()
    page.wait_for_selector(f"#query-note:has-text('{first_name}')")
    assert page.inner_text("#query-note") == f"Images like {first_name}" and "#" not in page.inner_text("#query-note")
    assert page.input_value("#q") == "" and first_name in page.get_attribute("#q", "placeholder")
    assert page.url.endswith(f"/?like={first_id}")
    # Back: the text search again, its query in the box.
    page.go_back()
    page.wait_for_url("**/?q=a+red+car")
    page.wait_for_selector("#message:has-text('12 results')")
    assert page.input_value("#q") == "a red car" and page.inner_text("#query-note") == ""
    page.go_forward()
    page.wait_for_selector(f"#query-note:has-text('{first_name}')")

    # Search by a picked image: that image is the best hit.
    name = "img_009.jpg"
    page.set_input_files("#image-input", str(fx.photos[name]))
    page.wait_for_function(f"document.querySelector('#results .hit')?.dataset.id === '{fx.ids[name]}'")
    assert page.locator("#query-note img").count() == 1
    assert page.inner_text("#query-note") == f"Images like {name}" and name in page.get_attribute("#q", "placeholder")

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "browser-search.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert errors == []
    page.close()


def test_phone_width_and_folder_filter(browser, server, fx):
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, bypass_csp=True)
    page.goto(server.url + "/")
    page.wait_for_function("document.getElementById('folder').options.length > 1")
    page.select_option("#folder", str(fx.root / "b"))
    page.wait_for_selector("#query-note:has-text('the filters apply to searches')")  # the recent list is not filtered
    page.fill("#q", "mountains")
    page.wait_for_selector("#results li")
    page.wait_for_function("document.querySelectorAll('#results li').length === 6")
    names = page.eval_on_selector_all("#results .name", "els => els.map(e => e.textContent)")
    assert sorted(names) == [f"img_{i:03d}.jpg" for i in range(6, 12)]
    # Nothing overflows sideways at phone width.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-phone.png"))
    page.close()


def test_login_with_token(browser, tmp_path_factory, tiny_clip, pytestconfig):
    guarded = session_server("guarded", tmp_path_factory, tiny_clip, pytestconfig, **GUARDED_OPTIONS)
    page = browser.new_page(bypass_csp=True)
    page.goto(guarded.url + "/")
    page.wait_for_selector("#login:not([hidden])")
    page.fill("#token", "wrong")
    page.click("#login button")
    page.wait_for_selector("#login-error:has-text('wrong token')")
    page.fill("#token", TOKEN)
    page.press("#token", "Enter")
    page.wait_for_selector("#login[hidden]", state="attached")
    page.wait_for_selector("#status-line:has-text('13 images')")
    page.fill("#q", "cat")
    page.wait_for_selector("#results li")
    page.close()


def ranking(server, path):
    """The ids the API ranks first for ``path`` (a page of the page's size, 24)."""
    from server_harness import get_json

    return [str(h["id"]) for h in get_json(server, path)["results"]]


def shown_ids(page):
    return page.eval_on_selector_all("#results .hit", "els => els.map(e => e.dataset.id)")


def wait_for_ids(page, ids):
    page.wait_for_function("ids => JSON.stringify([...document.querySelectorAll('#results .hit')]"
                           ".map(e => e.dataset.id)) === JSON.stringify(ids)", arg=ids)


def test_browse_on_arrival_url_query_and_back_button(browser, server, fx):
    page = browser.new_page(bypass_csp=True)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # Arrival: the recently indexed images, not a blank page (no scores: they are not search results).
    page.goto(server.url + "/")
    wait_for_ids(page, ranking(server, "/api/recent?k=24"))
    assert page.inner_text("#query-note") == "Recently indexed images"
    assert page.locator("#results .hit").count() == 12 and page.locator("#results .score").count() == 0

    # Each search is a history entry with its query in the URL.
    for q in ("dog", "a cat"):
        page.fill("#q", q)
        page.press("#q", "Enter")
        page.wait_for_url(f"**/?q={q.replace(' ', '+')}")
        wait_for_ids(page, ranking(server, f"/api/search?q={quote(q)}&k=24"))
    assert page.title() == "a cat · glimpse"
    page.go_back()
    page.wait_for_url("**/?q=dog")
    wait_for_ids(page, ranking(server, "/api/search?q=dog&k=24"))
    assert page.input_value("#q") == "dog"
    page.go_back()
    page.wait_for_url(server.url + "/")
    wait_for_ids(page, ranking(server, "/api/recent?k=24"))
    assert page.input_value("#q") == "" and page.inner_text("#query-note") == "Recently indexed images"
    page.go_forward()
    page.wait_for_url("**/?q=dog")
    assert page.input_value("#q") == "dog"

    # Pauses while typing one query replace its entry rather than adding one per pause.
    page.fill("#q", "a red")
    page.wait_for_url("**/?q=a+red")
    page.fill("#q", "a red bus")
    page.wait_for_url("**/?q=a+red+bus")
    page.go_back()
    page.wait_for_url("**/?q=dog")
    assert page.input_value("#q") == "dog"

    # A shared link runs its search on load, the query in the box.
    shared = browser.new_page(bypass_csp=True)
    shared.on("pageerror", lambda exc: errors.append(str(exc)))
    shared.goto(server.url + "/?q=a%20red%20car")
    wait_for_ids(shared, ranking(server, "/api/search?q=a%20red%20car&k=24"))
    assert shared.input_value("#q") == "a red car"
    # ... and a shared "more like this" names the image by its file name.
    name = "img_004.jpg"
    shared.goto(server.url + f"/?like={fx.ids[name]}")
    wait_for_ids(shared, ranking(server, f"/api/similar/{fx.ids[name]}?k=24"))
    shared.wait_for_selector(f"#query-note:has-text('{name}')")
    assert shared.inner_text("#query-note") == f"Images like {name}"
    assert name in shared.get_attribute("#q", "placeholder") and shared.input_value("#q") == ""
    assert errors == []
    page.close()
    shared.close()


def test_favicon_and_no_failed_requests(browser, server):
    page = browser.new_page(bypass_csp=True)
    failed: list[str] = []
    console: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    page.goto(server.url + "/")
    page.wait_for_selector("#message:has-text('12 images')")
    icon = page.evaluate("fetch(document.querySelector('link[rel=icon]').href)"
                         ".then(r => [r.status, r.headers.get('content-type')])")
    assert icon[0] == 200 and icon[1].startswith("image/svg+xml")
    assert page.evaluate("fetch('/favicon.ico').then(r => r.status)") == 200
    assert failed == [] and console == []
    page.close()
