"""A pure ASGI middleware in front of every route: body size limit (413), body-read timeout
(408), per-client token buckets (429 with Retry-After), separately for reads (GET/HEAD) and
writes (everything else), and security headers on every answer.

Write buckets are shared by every worker process through the database (`ratelimit`); read
buckets live in each process, each sized to its share of the limit. Behind proxies
(`trust_forwarded_for`), the client is the rightmost `X-Forwarded-For` hop our own proxies did
not add (`forwarded_hops` of them): the leftmost is whatever the client chose to send.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import Problem, problem_response
from .ratelimit import LimiterUnavailable, SharedBuckets

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# scope key: an async callable charging this read to the client's write bucket (seconds to wait)
CHARGE_AS_WRITE = "pith.charge_as_write"
MAX_CLIENTS = 50_000


class TokenBuckets:
    """`per_minute` requests a minute per client, bursting up to that many at once."""

    def __init__(self, per_minute: int, clock: Any = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, client: str) -> float:
        """0 when the request may go on; otherwise the seconds until it may."""
        now = self.clock()
        tokens, last = self._buckets.pop(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[client] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[client] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > MAX_CLIENTS:  # forget the longest idle clients
            self._buckets.popitem(last=False)
        return wait


SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
# Pages run no script of ours (charts are server-rendered SVG); JSON-LD blocks are data.
CONTENT_SECURITY_POLICY = (
    b"default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    b"form-action 'self'"
)
_SECURITY_HEADER_NAMES = frozenset(
    {name for name, _ in SECURITY_HEADERS} | {b"content-security-policy"}
)


def _origin(url: str) -> bytes:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".encode() if parts.scheme and parts.netloc else b""


def _rebase(location: bytes, origin: bytes) -> bytes:
    """An absolute redirect target moved onto `origin` (path and query kept)."""
    parts = urlsplit(location.decode("latin-1"))
    if not parts.scheme:
        return location
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    return origin + rest.encode("latin-1")


class BodyTimeout(StarletteHTTPException):
    """Raised when a body stalls: the connection is closed with a 408."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"the request body did not arrive within {seconds:g} s")


class BodyTooLarge(StarletteHTTPException):
    """Raised while a route reads a body past the limit (an HTTPException, so that FastAPI's own
    body parsing lets it through instead of reporting a malformed body)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request bodies are limited to {limit} bytes")


class GuardMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        reads_per_minute: int,
        writes_per_minute: int,
        trust_forwarded_for: bool = False,
        forwarded_hops: int = 1,
        shared_writes: SharedBuckets | None = None,
        body_timeout_seconds: float = 30.0,
        public_url: str = "",
        processes: int = 1,
    ) -> None:
        self.app = app
        self.max_body = max_body_bytes
        per_process_reads = max(1, reads_per_minute // max(1, processes))
        self.reads = TokenBuckets(per_process_reads) if reads_per_minute else None
        self.writes = TokenBuckets(writes_per_minute) if writes_per_minute else None
        self.shared_writes = shared_writes if writes_per_minute else None
        self.trust_forwarded_for = trust_forwarded_for
        self.forwarded_hops = max(1, forwarded_hops)
        self.body_timeout = body_timeout_seconds
        self.public_origin = _origin(public_url)

    def _client(self, scope: Scope) -> str:
        if self.trust_forwarded_for:
            hops: list[str] = []
            for name, value in scope.get("headers", ()):
                if name == b"x-forwarded-for":
                    hops.extend(h.strip() for h in value.decode("latin-1").split(","))
            hops = [h for h in hops if h]
            if hops:
                return hops[-min(self.forwarded_hops, len(hops))]
        client = scope.get("client")
        return client[0] if client else "unknown"

    async def _wait(self, is_read: bool, client: str) -> float:
        if is_read:
            return self.reads.take(client) if self.reads is not None else 0.0
        if self.shared_writes is not None:
            return await run_in_threadpool(self.shared_writes.take, client)
        return self.writes.take(client) if self.writes is not None else 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._secured(scope, send)
        is_read = scope["method"] in READ_METHODS
        try:
            wait = await self._wait(is_read, self._client(scope))
        except LimiterUnavailable:
            busy = Problem(
                503,
                "busy",
                "the write limiter's database is unavailable; nothing was stored, retry shortly",
                headers={"Retry-After": "1"},
            )
            await problem_response(busy, scope.get("path"))(scope, receive, send)
            return
        if wait > 0:
            retry = max(1, math.ceil(wait))
            problem = Problem(
                429,
                "rate_limited",
                f"too many {'reads' if is_read else 'writes'} from this client; retry in {retry} s",
                headers={"Retry-After": str(retry)},
            )
            await problem_response(problem, scope.get("path"))(scope, receive, send)
            return
        if is_read:
            client = self._client(scope)

            async def charge_as_write() -> float:
                return await self._wait(False, client)

            # a read that turns out heavy (a fixed page built afresh) is charged as a write
            await self.app({**scope, CHARGE_AS_WRITE: charge_as_write}, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_body:
                    await self._too_large(scope, receive, send)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except TimeoutError:
                raise BodyTimeout(self.body_timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self.max_body)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._too_large(scope, receive, send)
        except BodyTimeout:
            if not started:
                problem = Problem(
                    408,
                    "body_timeout",
                    f"the request body did not arrive within {self.body_timeout:g} s",
                    headers={"Connection": "close"},
                )
                await problem_response(problem, scope.get("path"))(scope, receive, send)

    def _secured(self, scope: Scope, send: Send) -> Send:
        """`send` adding security headers to every answer, and making a redirect's absolute
        Location point at the configured public URL (never at the request's Host header)."""
        path = scope.get("path", "")
        docs = path.startswith(("/docs", "/redoc"))

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in _SECURITY_HEADER_NAMES
                ]
                status = message.get("status", 200)
                if 300 <= status < 400 and self.public_origin:
                    headers = [
                        (k, _rebase(v, self.public_origin) if k.lower() == b"location" else v)
                        for k, v in headers
                    ]
                headers.extend(SECURITY_HEADERS)
                if not docs:
                    headers.append((b"content-security-policy", CONTENT_SECURITY_POLICY))
                message = {**message, "headers": headers}
            await send(message)

        return secured_send

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = Problem(
            413,
            "body_too_large",
            f"request bodies are limited to {self.max_body} bytes",
            headers={"Connection": "close"},
        )
        await problem_response(problem, scope.get("path"))(scope, receive, send)
