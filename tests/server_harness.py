"""Real glimpse servers for the server tests: uvicorn on 127.0.0.1 with a random free port, in a thread.

Servers are started once per test session (cached here, stopped at session end) over one small
generated library: ``root/a`` and ``root/b`` with 6 photos each, a text file, and ``root/a/escape.jpg``,
a symlink to a photo *outside* the root (which must never be served).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import make_photo, make_photos
from glimpse.server.security import AuthThrottle

TOKEN = "s3cret-token-for-tests"
GUARDED_LIMIT_BYTES = 200_000
# The "guarded" server: a token, and small upload / megapixel limits to test them cheaply. Its tests send
# many wrong tokens from 127.0.0.1 on purpose, so its throttle never locks them out; the throttle is
# tested on a server of its own.
GUARDED_OPTIONS = {"token": TOKEN, "max_upload_bytes": GUARDED_LIMIT_BYTES, "max_megapixels": 1.0,
                   "auth_throttle": AuthThrottle(free_failures=1_000_000)}


@dataclass
class Served:
    url: str
    host: str
    port: int
    app: Any
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@dataclass
class Fixture:
    library: Path
    root: Path
    outside: Path
    photos: dict[str, Path]  # name → path of every indexed photo
    ids: dict[str, int]  # name → catalog id
    escape_id: int


def build_library(base: Path, model: Path) -> Fixture:
    import glimpse

    root, outside = base / "root", base / "outside"
    photos = {p.name: p for p in make_photos(root / "a", 6) + make_photos(root / "b", 6, start=6)}
    (root / "notes.txt").write_text("not an image")
    secret = make_photo(outside / "secret.jpg", seed=99)
    (root / "a" / "escape.jpg").symlink_to(secret)
    with glimpse.open_library(base / "library", model=str(model)) as lib:
        lib.index([root])
        ids = {name: lib.catalog.file_by_path(str(path)).id for name, path in photos.items()}
        escape_id = lib.catalog.file_by_path(str(root / "a" / "escape.jpg")).id
    return Fixture(base / "library", root, outside, photos, ids, escape_id)


def serve(app: Any) -> Served:
    """Run ``app`` with uvicorn on 127.0.0.1:<free port> in a daemon thread; returns once it accepts."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn exited before it started")
        time.sleep(0.02)
    return Served(f"http://127.0.0.1:{port}", "127.0.0.1", port, app, server, thread)


_CACHE: dict[str, Any] = {}


def session_fixture(tmp_path_factory: Any, tiny_clip: Path) -> Fixture:
    if "fixture" not in _CACHE:
        _CACHE["fixture"] = build_library(tmp_path_factory.mktemp("served"), tiny_clip)
    return _CACHE["fixture"]


def session_server(name: str, tmp_path_factory: Any, tiny_clip: Path, pytestconfig: Any, **options: Any) -> Served:
    """The server ``name`` (started on first use with ``options`` for create_app), shared by all test files."""
    if name not in _CACHE:
        from glimpse.server.app import create_app
        from glimpse.settings import LibrarySettings

        fixture = session_fixture(tmp_path_factory, tiny_clip)
        served = serve(create_app(LibrarySettings(fixture.library, str(tiny_clip)), **options))
        pytestconfig.add_cleanup(served.stop)
        _CACHE[name] = served
    return _CACHE[name]


# -- a raw HTTP client: paths are sent exactly as written (no ``..`` normalisation, no re-encoding) --------
@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(served: Served, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
         chunks: list[bytes] | None = None, source: str | None = None) -> Reply:
    """One request; ``source``: the client's own address (any 127.x.y.z is loopback on Linux)."""
    conn = http.client.HTTPConnection(served.host, served.port, timeout=60,
                                      source_address=(source, 0) if source else None)
    try:
        if chunks is not None:
            conn.putrequest(method, path)
            for key, value in (headers or {}).items():
                conn.putheader(key, value)
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            try:
                for chunk in chunks:
                    conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                conn.send(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer 413 and close before the whole body is sent
        else:
            conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def get_json(served: Served, path: str, headers: dict[str, str] | None = None) -> Any:
    reply = call(served, "GET", path, headers=headers)
    assert reply.status == 200, (path, reply.status, reply.body[:300])
    return reply.json()


def multipart(field: str, filename: str, data: bytes, content_type: str = "application/octet-stream"
              ) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(len(body))}


def post_json(served: Served, path: str, payload: Any, headers: dict[str, str] | None = None,
              source: str | None = None) -> Reply:
    body = json.dumps(payload).encode()
    return call(served, "POST", path, body=body, source=source,
                headers={"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})})


CHROMIUM = Path("/usr/bin/chromium")


@contextmanager
def browser_page(url: str) -> Iterator[tuple[Any, list[str]]]:
    """A page of headless Debian chromium (Playwright, no browser download) opened at ``url``, and the list the
    page's script errors are collected in; the test is skipped where chromium or Playwright is missing."""
    import pytest

    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            # bypass_csp: the page forbids eval, which Playwright's wait_for_function uses; the app is unchanged.
            page = browser.new_page(viewport={"width": 1100, "height": 800}, bypass_csp=True)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(url)
            yield page, errors
        finally:
            browser.close()
