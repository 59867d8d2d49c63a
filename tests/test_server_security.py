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
    check_bind(host, "a-real-secret")


def test_serve_command_refuses_public_bind_without_token(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from glimpse.cli import app

    monkeypatch.delenv("GLIMPSE_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["--library", str(tmp_path / "lib"), "serve", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "without a token" in result.stderr
    assert not (tmp_path / "lib").exists()  # refused before touching anything


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
