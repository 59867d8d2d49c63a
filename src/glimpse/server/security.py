"""Secure-by-default rules of the HTTP server: who may call it, what it may serve, how much it accepts.

* **Binding.** A non-loopback address is refused without a token, or with one shorter than
  ``MIN_TOKEN_CHARS`` (:func:`check_bind`).
* **Token.** Sent as ``Authorization: Bearer T``, ``X-Glimpse-Token: T`` or the ``glimpse_token`` cookie
  (set by ``POST /api/login``); compared with :func:`hmac.compare_digest` so timing reveals nothing.
  Wrong tokens are throttled per client address (:class:`AuthThrottle`): after ``free_failures`` of them
  the address gets 429 with ``Retry-After`` for a back-off that doubles with every further failure.
* **Host / Origin.** Without a token the server only answers requests addressed to a loopback host name,
  which defeats DNS rebinding (a hostile page whose name resolves to 127.0.0.1). State-changing requests
  whose ``Origin`` is another site — another host, port *or scheme* — are refused (CSRF: a form POST needs
  no CORS preflight).
* **Body size.** Request bodies over ``max_body_bytes`` get 413, whether announced by Content-Length or
  streamed in chunks.
* **Files.** Only catalog paths whose real path (symlinks resolved) lies inside an indexed root are
  served (:func:`servable_path`).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
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
# Off loopback the token is all that protects the library: 16 random characters are out of reach of
# guessing at the throttled rate, a short word is not.
MIN_TOKEN_CHARS = 16
TOKEN_ADVICE = 'e.g. --token "$(openssl rand -hex 16)"'
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
    """Refuse to listen on a non-loopback address without a token of at least ``MIN_TOKEN_CHARS``
    characters (raises UserInputError)."""
    if token is not None and not token.strip():
        raise UserInputError(f"the token is empty; give a long random secret, {TOKEN_ADVICE}")
    if is_loopback(host):
        return
    if not token:
        raise UserInputError(
            f"refusing to serve on {host} without a token: anyone on the network could read your library. "
            "Pass --token SECRET (or set GLIMPSE_TOKEN), or bind to 127.0.0.1"
        )
    if len(token) < MIN_TOKEN_CHARS:
        raise UserInputError(
            f"refusing to serve on {host} with a {len(token)}-character token: off loopback it must have at "
            f"least {MIN_TOKEN_CHARS} characters so nobody on the network can guess it; {TOKEN_ADVICE}"
        )


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison of a presented token with the configured one."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), token.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class AuthResult:
    """The verdict on one presented token: ``ok``, or refused; ``retry_after`` (seconds) when the client's
    address is locked out (answer 429 with ``Retry-After``)."""

    ok: bool
    retry_after: int | None = None


@dataclass
class _Failures:
    """Wrong tokens from one address: how many, when the last came, until when it is locked out."""

    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class AuthThrottle:
    """Per-client-address throttle of wrong tokens: the one place a presented token is judged.

    The first ``free_failures`` wrong tokens from an address cost nothing; each one after that locks the
    address out for ``base_backoff_s * 2**(n - 1)`` seconds (n: failures past the free ones), at most
    ``max_backoff_s``. While locked out, *every* token from that address is refused with 429, the right one
    too: were the right one let through, the lock-out would not slow guessing at all. A right token outside a
    lock-out clears the address's record, so clients that authenticate are never throttled. A request with
    no token at all is not a guess and is not counted. Records older than ``forget_after_s`` are dropped, and
    at most ``max_addresses`` are kept (the least recently failing go first), so a flood of addresses cannot
    exhaust memory.
    """

    def __init__(self, *, free_failures: int = 10, base_backoff_s: float = 1.0, max_backoff_s: float = 300.0,
                 forget_after_s: float = 3600.0, max_addresses: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.free_failures = free_failures
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.forget_after_s = forget_after_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._lock = threading.Lock()
        # Ordered by last failure, oldest first (a failing address is moved to the end).
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    def check(self, address: str, given: str | None, token: str) -> AuthResult:
        """Judge ``given`` (None: no token presented) from client ``address`` against ``token``."""
        now = self._clock()
        with self._lock:
            self._forget_old(now)
            record = self._failures.get(address)
            if record is not None and now < record.locked_until:
                return AuthResult(False, max(1, math.ceil(record.locked_until - now)))
        if given is None:
            return AuthResult(False)
        if token_matches(given, token):
            with self._lock:
                self._failures.pop(address, None)
            return AuthResult(True)
        with self._lock:
            self._record_failure(address, now)
        return AuthResult(False)

    def tracked(self) -> int:
        """How many client addresses have wrong tokens on record."""
        with self._lock:
            return len(self._failures)

    def _record_failure(self, address: str, now: float) -> None:
        record = self._failures.pop(address, None) or _Failures()
        record.count += 1
        record.last = now
        past_free = record.count - self.free_failures
        if past_free > 0:
            record.locked_until = now + min(self.max_backoff_s, self.base_backoff_s * 2.0 ** min(past_free - 1, 60))
        self._failures[address] = record
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)

    def _forget_old(self, now: float) -> None:
        while self._failures:
            record = next(iter(self._failures.values()))
            if now - record.last < self.forget_after_s or now < record.locked_until:
                break
            self._failures.popitem(last=False)


def client_address(scope: Scope) -> str:
    """The peer's IP address of an ASGI request (proxy headers are not trusted)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


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


async def send_json(send: Send, status: int, payload: dict[str, Any],
                    headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *SECURITY_HEADERS, *headers]})
    await send({"type": "http.response.body", "body": body})


def throttled_message(retry_after: int) -> str:
    return (f"too many wrong tokens from your address; try again in {retry_after} s "
            "with the token the server was started with")


class _BodyTooLarge(Exception):
    pass


class SecurityMiddleware:
    """ASGI middleware applying the rules of this module before any route runs.

    ``token``: None means loopback-only, no authentication. ``allowed_origins``: extra origins allowed to
    make state-changing requests (the CORS allow-list, empty by default). ``throttle``: judges presented
    tokens (shared with the login route, so both count the same failures).
    """

    def __init__(self, app: ASGIApp, *, token: str | None, max_body_bytes: int,
                 allowed_origins: Iterable[str] = (), throttle: AuthThrottle | None = None) -> None:
        self.app = app
        self.token = token
        self.max_body_bytes = max_body_bytes
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}
        self.throttle = throttle if throttle is not None else AuthThrottle()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            status, message, extra = refusal
            await send_json(send, status, {"error": message}, extra)
            return
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await send_json(send, 413, {"error": self._too_large_message()})
            return
        await self._call_limited(scope, receive, send)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        host = headers.get("host", "")
        if self.token is None and not is_loopback(_host_name(host)):
            return 403, (f"host {host!r} is not allowed: this server has no token and answers only requests "
                         "to localhost / 127.0.0.1; restart it with --token to serve other names"), []
        origin = headers.get("origin")
        if scope["method"] in UNSAFE_METHODS and origin is not None and not self._origin_ok(origin, host, scope):
            return 403, f"cross-site request from {origin} refused; open the page from this server instead", []
        path = scope["path"]
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        if self.token is None or public:
            return None
        result = self.throttle.check(client_address(scope), presented_token(headers), self.token)
        if result.retry_after is not None:
            return 429, throttled_message(result.retry_after), [(b"retry-after", str(result.retry_after).encode())]
        if not result.ok:
            return 401, ("missing or wrong token: send 'Authorization: Bearer TOKEN' or log in on the page "
                         "with the token the server was started with"), []
        return None

    def _origin_ok(self, origin: str, host: str, scope: Scope) -> bool:
        """Same origin: the Origin's scheme *and* host[:port] are this request's (or it is allow-listed)."""
        if origin.rstrip("/").lower() in self.allowed_origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme.lower() == str(scope.get("scheme", "http")).lower() and parts.netloc.lower() == host.lower()

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
