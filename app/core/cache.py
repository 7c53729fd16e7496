"""A per-worker cache of rendered read responses (record JSON, pages, states, bundles).

Everything a reader sees changes only when the event log grows (registering or importing a
record appends its record event too), so an entry is good while the log's head — its highest
log index — is where it was when the entry was built. A worker re-reads the head at most every
`ttl` seconds, and at once after its own writes: its own clients read their writes, and other
workers' writes show within `ttl`.

Entries are keyed by what the request asks for (path, query, representation), so a pure ASGI
middleware can answer a hit before FastAPI's routing and dependency machinery runs; a miss goes
on to the route, which renders and stores the entry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from .negotiation import variant

MAX_ENTRIES = 20_000
ResponseKey = tuple[str, bytes, str]


def response_key(scope: Scope) -> ResponseKey:
    """(path, query string, representation) of a GET request."""
    accept = ""
    for name, value in scope["headers"]:
        if name == b"accept":
            accept = value.decode("latin-1")
            break
    path = scope["path"]
    return path, scope.get("query_string", b""), variant(path, accept)


class ReadCache:
    def __init__(self, head: Callable[[], int], ttl: float, clock: Any = time.monotonic) -> None:
        self._read_head = head
        self.ttl = ttl
        self._clock = clock
        self._head = -1
        self._checked = float("-inf")
        self._entries: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    @property
    def head(self) -> int:
        """The log head as last seen, re-read when older than `ttl`."""
        if self._clock() - self._checked >= self.ttl:
            self.advance(self._read_head())
        return self._head

    def advance(self, head: int) -> None:
        """Move to `head` (never back); entries built before it are dropped."""
        with self._lock:
            self._checked = self._clock()
            if head > self._head:
                self._head = head
                self._entries = {}

    def get(self, key: Hashable) -> Any:
        if self.ttl <= 0:
            return None
        self.head  # noqa: B018 (refreshes the head when due)
        return self._entries.get(key)

    def put(self, key: Hashable, value: Any, built_at_head: int) -> None:
        """Keep `value`, built from the database as of log head `built_at_head`."""
        if self.ttl <= 0:
            return
        if built_at_head > self._head:
            self.advance(built_at_head)
        with self._lock:
            if built_at_head == self._head and len(self._entries) < MAX_ENTRIES:
                self._entries[key] = value


class CachedReadMiddleware:
    """Answers GET requests whose rendering is in the cache (ETag, 304, Vary included)."""

    def __init__(self, app: ASGIApp, *, cache: ReadCache) -> None:
        self.app = app
        self.cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        rendered = self.cache.get(response_key(scope))
        if rendered is None:
            await self.app(scope, receive, send)
            return
        await rendered.send(scope, send)
