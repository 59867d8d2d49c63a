"""The search page in a real browser: headless Debian chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import os
from pathlib import Path

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
    tags_installed = server.app.state.service.tags.available
    assert page.locator("#tag-filter").is_visible() is tags_installed

    # Typing searches by itself (debounced): no Enter needed.
    page.fill("#q", "a red car")
    page.wait_for_selector("#results li")
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

    # More like this: the image itself comes first.
    page.click("#more-like-this")
    page.wait_for_function(f"document.querySelector('#results .hit')?.dataset.id === '{first_id}'")
    assert not page.locator("#viewer[open]").count()

    # Search by a picked image: that image is the best hit.
    name = "img_009.jpg"
    page.set_input_files("#image-input", str(fx.photos[name]))
    page.wait_for_function(f"document.querySelector('#results .hit')?.dataset.id === '{fx.ids[name]}'")
    assert page.locator("#query-note img").count() == 1

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
