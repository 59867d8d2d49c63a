"""Secure-by-default rules of the HTTP server: who may call it, what it may serve, how much it accepts.

* **Binding.** A non-loopback address is refused without a token (:func:`check_bind`).
* **Token.** Sent as ``Authorization: Bearer T``, ``X-Glimpse-Token: T`` or the ``glimpse_token`` cookie
  (set by ``POST /api/login``); compared with :func:`hmac.compare_digest` so timing reveals nothing.
* **Host / Origin.** Without a token the server only answers requests addressed to a loopback host name,
  which defeats DNS rebinding (a hostile page whose name resolves to 127.0.0.1). State-changing requests
  whose ``Origin`` is another site are refused (CSRF: a form POST needs no CORS preflight).
* **Body size.** Request bodies over ``max_body_bytes`` get 413, whether announced by Content-Length or
  streamed in chunks.
* **Files.** Only catalog paths whose real path (symlinks resolved) lies inside an indexed root are
  served (:func:`servable_path`).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from glimpse.errors import UserInputError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_COOKIE = "glimpse_token"
TOKEN_HEADER = "x-glimpse-token"
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost"})
# Paths anyone may fetch: the page itself (it holds no data and shows the token prompt), liveness, login.
PUBLIC_PATHS = frozenset({"/", "/healthz", "/api/login", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/",)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy",
     b"default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
     b"connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the name localhost (host without port; IPv6 with or without [])."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen on a non-loopback address without a token (raises UserInputError)."""
    if token is not None and not token.strip():
        raise UserInputError("the token is empty; give a long random secret, e.g. --token \"$(openssl rand -hex 16)\"")
    if not is_loopback(host) and not token:
        raise UserInputError(
            f"refusing to serve on {host} without a token: anyone on the network could read your library. "
            "Pass --token SECRET (or set GLIMPSE_TOKEN), or bind to 127.0.0.1"
        )


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass"))


def servable_path(path: str, roots: Iterable[str]) -> str | None:
    """The real path of ``path`` if it is a regular file inside one of ``roots`` (both resolved), else None.

    Resolving both sides means a symlink inside a root that points outside it is *not* servable, and a
    root that is itself a symlink still serves its own files.
    """
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError):
        return None
    if not os.path.isfile(real):
        return None
    for root in roots:
        real_root = os.path.realpath(root)
        if real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep):
            return real
    return None


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def presented_token(headers: dict[str, str]) -> str | None:
    """The token a request carries: Bearer header, X-Glimpse-Token header, or cookie (in that order)."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if TOKEN_HEADER in headers:
        return headers[TOKEN_HEADER].strip()
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is simply no token
        return None
    morsel = cookie.get(TOKEN_COOKIE)
    return morsel.value if morsel is not None else None


def _host_name(host_header: str) -> str:
    """``example.org:8000`` → ``example.org``; ``[::1]:8000`` → ``::1``."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


async def send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass


class SecurityMiddleware:
    """ASGI middleware applying the rules of this module before any route runs.

    ``token``: None means loopback-only, no authentication. ``allowed_origins``: extra origins allowed to
    make state-changing requests (the CORS allow-list, empty by default).
    """

    def __init__(self, app: ASGIApp, *, token: str | None, max_body_bytes: int,
                 allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await send_json(send, refusal[0], {"error": refusal[1]})
            return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await send_json(send, 413, {"error": self._too_large_message()})
            return
        await self._call_limited(scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.token is None and not is_loopback(_host_name(host)):
            return 403, (f"host {host!r} is not allowed: this server has no token and answers only requests "
                         "to localhost / 127.0.0.1; restart it with --token to serve other names")
        origin = headers.get("origin")
        if scope["method"] in UNSAFE_METHODS and origin is not None and not self._origin_ok(origin, host):
            return 403, f"cross-site request from {origin} refused; open the page from this server instead"
        path = scope["path"]
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        if self.token is not None and not public and not token_matches(presented_token(headers), self.token):
            return 401, ("missing or wrong token: send 'Authorization: Bearer TOKEN' or log in on the page "
                         "with the token the server was started with")
        return None

    def _origin_ok(self, origin: str, host: str) -> bool:
        if origin.rstrip("/").lower() in self.allowed_origins:
            return True
        return urlsplit(origin).netloc.lower() == host.lower()

    def _too_large_message(self) -> str:
        return f"request body too large: at most {self.max_body_bytes // 1_000_000} MB; send a smaller image"

    async def _call_limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count streamed body bytes; once over the limit, the app's response is replaced by a 413."""
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                # Whatever the app made of the truncated body (FastAPI reports "error parsing the body"),
                # the client must learn the real reason.
                if not started:
                    started = True
                    await send_json(send, 413, {"error": self._too_large_message()})
                return
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            if not started:
                await send_json(send, 413, {"error": self._too_large_message()})
