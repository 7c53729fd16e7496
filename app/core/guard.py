"""A pure ASGI middleware in front of every route: body size limit (413) and per-client token
buckets (429 with Retry-After), separately for reads (GET/HEAD) and writes (everything else).

Buckets live in each worker process: with N workers a client may get up to N times the rate.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .problems import Problem, problem_response

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
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
    ) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.reads = TokenBuckets(reads_per_minute) if reads_per_minute else None
        self.writes = TokenBuckets(writes_per_minute) if writes_per_minute else None
        self.trust_forwarded_for = trust_forwarded_for

    def _client(self, scope: Scope) -> str:
        if self.trust_forwarded_for:
            for name, value in scope.get("headers", ()):
                if name == b"x-forwarded-for":
                    return value.decode("latin-1").split(",")[0].strip()
        client = scope.get("client")
        return client[0] if client else "unknown"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_read = scope["method"] in READ_METHODS
        buckets = self.reads if is_read else self.writes
        if buckets is not None:
            wait = buckets.take(self._client(scope))
            if wait > 0:
                retry = max(1, math.ceil(wait))
                problem = Problem(
                    429,
                    "rate_limited",
                    f"too many {'reads' if is_read else 'writes'} from this client; "
                    f"retry in {retry} s",
                    headers={"Retry-After": str(retry)},
                )
                await problem_response(problem, scope.get("path"))(scope, receive, send)
                return
        if is_read:
            await self.app(scope, receive, send)
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
            message = await receive()
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

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = Problem(
            413,
            "body_too_large",
            f"request bodies are limited to {self.max_body} bytes",
            headers={"Connection": "close"},
        )
        await problem_response(problem, scope.get("path"))(scope, receive, send)
