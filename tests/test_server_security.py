"""Secure by default: binding, tokens, hosts/origins, path traversal, symlinks, upload limits, CORS."""

from __future__ import annotations

import io

import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from glimpse.errors import UserInputError
from server_harness import (
    GUARDED_LIMIT_BYTES,
    GUARDED_OPTIONS,
    TOKEN,
    call,
    multipart,
    post_json,
    session_server,
)

LIMIT_BYTES = GUARDED_LIMIT_BYTES


@pytest.fixture(scope="session")
def guarded(tmp_path_factory, tiny_clip, pytestconfig):
    return session_server("guarded", tmp_path_factory, tiny_clip, pytestconfig, **GUARDED_OPTIONS)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


# -- binding --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.5"])
def test_loopback_needs_no_token(host):
    from glimpse.server.security import check_bind

    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org"])
def test_non_loopback_refuses_to_start_without_token(host):
    from glimpse.server.security import check_bind

    with pytest.raises(UserInputError, match="--token"):
        check_bind(host, None)
    with pytest.raises(UserInputError, match="empty"):
        check_bind(host, "  ")
    check_bind(host, "a-real-secret-of-16+")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])
def test_non_loopback_refuses_a_short_token(host):
    from glimpse.server.security import MIN_TOKEN_CHARS, check_bind

    assert MIN_TOKEN_CHARS == 16
    for short in ("a-real-secret", "x" * 15):
        with pytest.raises(UserInputError, match=rf"{len(short)}-character token.*at least 16"):
            check_bind(host, short)
    check_bind(host, "x" * 16)
    check_bind("127.0.0.1", "short")  # on loopback any token is an extra, not the only protection


def test_serve_command_refuses_public_bind_without_token(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from glimpse.cli import app

    monkeypatch.delenv("GLIMPSE_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["--library", str(tmp_path / "lib"), "serve", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "without a token" in result.stderr
    assert not (tmp_path / "lib").exists()  # refused before touching anything


def test_serve_command_refuses_a_short_token_off_loopback(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from glimpse.cli import app

    monkeypatch.delenv("GLIMPSE_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["--library", str(tmp_path / "lib"), "serve", "--host", "0.0.0.0",
                                      "--token", "hunter2"])
    assert result.exit_code == 1
    assert "7-character token" in result.stderr and "at least 16" in result.stderr
    assert not (tmp_path / "lib").exists()


# -- token ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/status", "/api/search?q=cat", "/api/images/1/file", "/api/images/1/thumbnail",
                                  "/api/tags", "/openapi.json"])
def test_missing_or_wrong_token_is_401(guarded, path):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Glimpse-Token": TOKEN[:-1]},
                    {"Cookie": "glimpse_token=nope"}, {"Authorization": TOKEN}):
        reply = call(guarded, "GET", path, headers=headers)
        assert reply.status == 401, (path, headers, reply.status)
        assert "token" in reply.json()["error"]


def test_token_by_header_or_login_cookie(guarded, fx):
    file_id = fx.ids["img_000.jpg"]
    assert call(guarded, "GET", f"/api/images/{file_id}", headers=AUTH).status == 200
    assert call(guarded, "GET", f"/api/images/{file_id}", headers={"X-Glimpse-Token": TOKEN}).status == 200
    assert post_json(guarded, "/api/login", {"token": "wrong"}).status == 401
    login = post_json(guarded, "/api/login", {"token": TOKEN})
    assert login.status == 204
    cookie = login.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    reply = call(guarded, "GET", f"/api/images/{file_id}/file", headers={"Cookie": cookie.split(";", 1)[0]})
    assert reply.status == 200 and reply.body == fx.photos["img_000.jpg"].read_bytes()


def test_page_and_health_need_no_token(guarded):
    for path in ("/", "/static/app.js", "/static/app.css", "/healthz"):
        assert call(guarded, "GET", path).status == 200, path


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_backs_off_wrong_tokens_per_address():
    from glimpse.server.security import AuthThrottle

    clock = FakeClock()
    throttle = AuthThrottle(free_failures=3, base_backoff_s=1.0, max_backoff_s=8.0, clock=clock)
    right, wrong = "the-right-token!", "a-wrong-token!!!"
    for _ in range(3):
        assert throttle.check("10.0.0.9", wrong, right).retry_after is None  # free failures: plain refusals
    assert throttle.check("10.0.0.9", wrong, right).ok is False  # the 4th locks the address out for 1 s
    locked = throttle.check("10.0.0.9", right, right)
    assert not locked.ok and locked.retry_after == 1  # even the right token waits: otherwise guessing goes on
    assert throttle.check("10.0.0.7", right, right).ok  # other addresses are not affected
    assert throttle.check("10.0.0.9", None, right).retry_after == 1
    waits = []
    for _ in range(5):  # each failure after the lock-out ends doubles the next one, up to max_backoff_s
        clock.now += throttle.check("10.0.0.9", None, right).retry_after
        assert throttle.check("10.0.0.9", wrong, right).retry_after is None
        waits.append(throttle.check("10.0.0.9", right, right).retry_after)
    assert waits == [2, 4, 8, 8, 8]
    clock.now += 8
    assert throttle.check("10.0.0.9", right, right).ok  # the right token after the lock-out: record cleared
    for _ in range(3):
        assert throttle.check("10.0.0.9", wrong, right).retry_after is None
    assert throttle.check("10.0.0.9", right, right).ok


def test_throttle_spares_clients_that_authenticate_and_forgets():
    from glimpse.server.security import AuthThrottle

    clock = FakeClock()
    throttle = AuthThrottle(free_failures=2, forget_after_s=60, max_addresses=3, clock=clock)
    right = "the-right-token!"
    for _ in range(50):  # a typo now and then never adds up while the client also gets it right
        assert not throttle.check("10.0.0.1", "typo", right).ok
        assert throttle.check("10.0.0.1", right, right).ok
    for _ in range(20):  # no token at all is not a guess
        assert throttle.check("10.0.0.2", None, right).retry_after is None
    for _ in range(2):
        throttle.check("10.0.0.3", "guess", right)
    clock.now += 61  # an hour-old (here: a minute-old) record is forgotten: two more are free again
    for _ in range(2):
        assert throttle.check("10.0.0.3", "guess", right).retry_after is None
    assert throttle.check("10.0.0.3", right, right).ok
    for i in range(10):  # a flood of addresses: only max_addresses records are kept
        throttle.check(f"10.1.0.{i}", "guess", right)
    assert throttle.tracked() == 3


@pytest.fixture(scope="session")
def throttled(tmp_path_factory, tiny_clip, pytestconfig):
    """A token server whose throttle runs on a clock the test moves (3 free wrong tokens, then 1 s, 2 s, ...)."""
    from glimpse.server.security import AuthThrottle

    clock = FakeClock()
    served = session_server("throttled", tmp_path_factory, tiny_clip, pytestconfig, token=TOKEN,
                            auth_throttle=AuthThrottle(free_failures=3, clock=clock))
    return served, clock


def test_wrong_tokens_are_throttled_with_retry_after(throttled):
    served, clock = throttled
    wrong = {"Authorization": "Bearer not-the-token-at-all"}
    assert call(served, "GET", "/api/status", headers=AUTH).status == 200
    for _ in range(4):  # the 4th wrong token is the first past the free ones: it starts a 1 s lock-out
        reply = call(served, "GET", "/api/status", headers=wrong)
        assert reply.status == 401 and "retry-after" not in reply.headers
    for reply in (call(served, "GET", "/api/status", headers=AUTH), post_json(served, "/api/login", {"token": TOKEN}),
                  call(served, "GET", "/api/search?q=cat", headers={"X-Glimpse-Token": "guess"})):
        assert reply.status == 429 and reply.headers["retry-after"] == "1"
        assert "too many wrong tokens" in reply.json()["error"] and "1 s" in reply.json()["error"]
    # Another client address is not locked out with this one.
    assert call(served, "GET", "/api/status", headers=AUTH, source="127.0.0.2").status == 200
    assert call(served, "GET", "/healthz").status == 200  # public paths need no token, so no throttle
    clock.now += 1
    assert post_json(served, "/api/login", {"token": "wrong"}).status == 401  # the 5th: a 2 s lock-out
    reply = post_json(served, "/api/login", {"token": TOKEN})
    assert reply.status == 429 and reply.headers["retry-after"] == "2"
    clock.now += 2
    assert post_json(served, "/api/login", {"token": TOKEN}).status == 204  # the right token clears the record
    for _ in range(3):
        assert call(served, "GET", "/api/status", headers=wrong).status == 401
    assert call(served, "GET", "/api/status", headers=AUTH).status == 200


def test_tokens_are_compared_in_constant_time(monkeypatch):
    from glimpse.server import security

    calls = []
    real = security.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    assert security.token_matches("abc", "abc") and not security.token_matches("abd", "abc")
    assert calls == [(b"abc", b"abc"), (b"abd", b"abc")]


# -- hosts and origins ------------------------------------------------------------------------------------
def test_tokenless_server_answers_only_loopback_host_names(server, guarded):
    # DNS rebinding: a hostile name resolving to 127.0.0.1 must not reach an unauthenticated server.
    reply = call(server, "GET", "/api/status", headers={"Host": "evil.example:8000"})
    assert reply.status == 403 and "not allowed" in reply.json()["error"]
    assert call(server, "GET", "/api/status", headers={"Host": f"localhost:{server.port}"}).status == 200
    # With a token, the token is what protects it: any host name works.
    assert call(guarded, "GET", "/api/status", headers={"Host": "photos.lan", **AUTH}).status == 200


def test_an_origin_with_another_scheme_is_cross_site(server):
    # https://127.0.0.1:PORT is another origin than http://127.0.0.1:PORT (a TLS page on the same host:port).
    same_host = f"127.0.0.1:{server.port}"
    reply = post_json(server, "/api/login", {"token": "x"}, headers={"Origin": f"https://{same_host}"})
    assert reply.status == 403 and "cross-site" in reply.json()["error"]
    assert post_json(server, "/api/login", {"token": "x"}, headers={"Origin": f"http://{same_host}"}).status == 204


def test_cross_site_posts_are_refused_and_cors_is_closed(server):
    reply = post_json(server, "/api/index", {}, headers={"Origin": "https://evil.example"})
    assert reply.status == 403 and "cross-site" in reply.json()["error"]
    preflight = call(server, "OPTIONS", "/api/search?q=x", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in preflight.headers
    simple = call(server, "GET", "/api/search?q=x", headers={"Origin": "https://evil.example"})
    assert simple.status == 200 and "access-control-allow-origin" not in simple.headers
    assert simple.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in simple.headers["content-security-policy"]


# -- files ----------------------------------------------------------------------------------------------
TRAVERSALS = [
    "/api/images/../../../../etc/passwd/file",
    "/api/images/..%2f..%2f..%2fetc%2fpasswd/file",
    "/api/images/%2e%2e/%2e%2e/etc/passwd/file",
    "/api/images//etc/passwd/file",
    "/api/images/%2Fetc%2Fpasswd/file",
    "/api/images/1%2f..%2f2/file",
    "/api/images/-1/file",
    "/api/images/1.0/file",
    "/api/images/99999999999999999999999/thumbnail",
    "/static/../../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static//etc/passwd",
    "/../../etc/passwd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_is_404(server, path):
    reply = call(server, "GET", path)
    assert reply.status == 404, (path, reply.status)
    assert b"root:" not in reply.body


def test_files_are_chosen_by_id_never_by_a_client_path(server, fx):
    file_id = fx.ids["img_004.jpg"]
    encoded = "".join(f"%{b:02x}" for b in str(file_id).encode())
    reply = call(server, "GET", f"/api/images/{encoded}/file?path=/etc/passwd&file=../../etc/passwd")
    assert reply.status == 200 and reply.body == fx.photos["img_004.jpg"].read_bytes()
    # ids of catalog rows that are not servable images (the text file is catalogued as 'skipped') are 404
    assert call(server, "GET", "/api/images/0/file").status == 404


def test_symlink_out_of_the_root_is_never_served(server, fx):
    secret = (fx.outside / "secret.jpg").read_bytes()
    for suffix in ("", "/file", "/thumbnail"):
        reply = call(server, "GET", f"/api/images/{fx.escape_id}{suffix}")
        assert reply.status == 404, suffix
        assert reply.body != secret
    hits = call(server, "GET", "/api/search?q=cat&k=50").json()["results"]
    assert fx.escape_id not in {h["id"] for h in hits} and len(hits) == 12
    assert call(server, "GET", f"/api/similar/{fx.escape_id}").status == 404


def test_thumbnails_are_written_only_under_the_library(server, fx):
    before = sorted(p for p in fx.root.rglob("*"))
    outside_before = sorted(fx.outside.rglob("*"))
    for file_id in fx.ids.values():
        assert call(server, "GET", f"/api/images/{file_id}/thumbnail").status == 200
    assert sorted(fx.root.rglob("*")) == before and sorted(fx.outside.rglob("*")) == outside_before
    thumbs = fx.library / "thumbs"
    made = {p.name.split("-")[0] for p in thumbs.iterdir()}
    assert {str(i) for i in fx.ids.values()} <= made
    assert all(p.parent == thumbs and p.suffix == ".jpg" for p in thumbs.iterdir())


def test_the_file_system_root_is_never_indexed(server, monkeypatch, tmp_path, tiny_clip):
    from glimpse.server.service import LibraryService
    from glimpse.settings import LibrarySettings

    service = server.app.state.service
    before = service.jobs.latest()
    # A server that somehow has / among its roots (here: put there behind its back) still refuses it.
    monkeypatch.setattr(service, "configured_roots", [*service.configured_roots, "/"])
    for payload in ({"roots": ["/"]}, {"roots": ["//"]}, {"roots": ["/tmp/.."]}, {}):
        reply = post_json(server, "/api/index", payload)
        assert reply.status == 400, (payload, reply.status, reply.body)
        assert "refusing to index /" in reply.json()["error"] and "whole file system" in reply.json()["error"]
    assert service.jobs.latest() is before  # no job was started
    with pytest.raises(UserInputError, match=r"refusing to index / .*--root"):
        LibraryService(LibrarySettings(tmp_path / "lib", str(tiny_clip)), roots=["/"])
    assert not (tmp_path / "lib").exists()  # refused before the library was opened


# -- uploads --------------------------------------------------------------------------------------------
def test_oversized_upload_is_413(guarded):
    body, headers = multipart("file", "big.jpg", b"\xff" * (LIMIT_BYTES + 1000))
    reply = call(guarded, "POST", "/api/search/image", body=body, headers={**headers, **AUTH})
    assert reply.status == 413 and "too large" in reply.json()["error"]


def test_oversized_chunked_upload_without_length_is_413(guarded):
    body, headers = multipart("file", "big.jpg", b"\xff" * (LIMIT_BYTES * 2))
    del headers["Content-Length"]
    chunks = [body[i : i + 16384] for i in range(0, len(body), 16384)]
    reply = call(guarded, "POST", "/api/search/image", chunks=chunks, headers={**headers, **AUTH})
    assert reply.status == 413 and "too large" in reply.json()["error"]


def test_image_over_the_megapixel_limit_is_413(guarded):
    buffer = io.BytesIO()
    Image.new("RGB", (1500, 1000), (200, 30, 30)).save(buffer, format="PNG")  # 1.5 MP in a few kB
    assert len(buffer.getvalue()) < LIMIT_BYTES
    body, headers = multipart("file", "wide.png", buffer.getvalue(), "image/png")
    reply = call(guarded, "POST", "/api/search/image", body=body, headers={**headers, **AUTH})
    assert reply.status == 413 and "megapixel" in reply.json()["error"].lower()
