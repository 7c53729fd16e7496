"""A per-worker cache of rendered read responses (record JSON, pages, states, bundles).

Everything a reader sees changes only when the event log grows (registering or importing a
record appends its record event too), so an entry is good while the log's head — its highest
log index — is where it was when the entry was built. A worker re-reads the head at most every
`ttl` seconds, and at once after its own writes: its own clients read their writes, and other
workers' writes show within `ttl`.

Entries are keyed by what the request asks for (path, the query parameters some route of the
app declares, in a canonical order, and the representation), so a pure ASGI middleware can answer
a hit before FastAPI's routing and dependency machinery runs, and `?cb=<random>` cannot bypass it;
a miss goes on to the route, which renders and stores the entry. The cache is a least recently
used set bounded in bytes (`max_bytes`); an entry larger than a quarter of it is not kept.

Some answers change without a new event (a witness cosignature makes a record anchored):
`watch` names a mark read with the head, whose change drops every entry, and `invalidate` drops
them at once after this worker stored such a thing. An entry is kept only if no invalidation
happened since the epoch its builder read before the build (`epoch`, passed to `put`; by default
the one its thread's last lookup saw), so an answer built before the change is never kept after
it.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

from .negotiation import variant

MAX_ENTRIES = 20_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
ResponseKey = tuple[str, bytes, str]
_UNREAD = object()  # the watched mark before its first read
# Per app object, weakly: an id() key outlives its app and a later app can reuse the id.
_QUERY_NAMES: weakref.WeakKeyDictionary[Any, frozenset[str] | None] = weakref.WeakKeyDictionary()


def _declared_query_names(app: Any) -> frozenset[str] | None:
    """Every query parameter name a route of `app` declares (None: unknown, keep them all)."""
    routes = getattr(app, "routes", None)
    if routes is None:
        return None
    names: set[str] = set()

    def walk(dependant: Any) -> None:
        for param in getattr(dependant, "query_params", ()):
            names.add(param.alias)
        for sub in getattr(dependant, "dependencies", ()):
            walk(sub)

    def visit(routes: Any) -> None:
        for route in routes:
            dependant = getattr(route, "dependant", None)
            if dependant is not None:
                walk(dependant)
            # an included router (FastAPI >= 0.16x keeps it whole) or a mount
            inner = getattr(route, "original_router", None) or route
            sub_routes = getattr(inner, "routes", None)
            if sub_routes is not None and inner is not app:
                visit(sub_routes)

    visit(routes)
    return frozenset(names)


def normalised_query(scope: Scope) -> bytes:
    """The query string reduced to parameters some route declares, sorted: what can change an
    answer. Parameters no route reads (cache busters) drop out."""
    raw = scope.get("query_string", b"")
    if not raw:
        return b""
    app = scope.get("app")
    try:
        names = _QUERY_NAMES[app]
    except KeyError:
        names = _QUERY_NAMES[app] = _declared_query_names(app)
    except TypeError:  # no app in the scope, or one that takes no weak reference
        names = _declared_query_names(app)
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    kept = sorted((k, v) for k, v in pairs if names is None or k in names)
    return urlencode(kept).encode("latin-1") if kept else b""


def response_key(scope: Scope) -> ResponseKey:
    """(path, normalised query, representation) of a GET request."""
    accept = ""
    for name, value in scope["headers"]:
        if name == b"accept":
            accept = value.decode("latin-1")
            break
    path = scope["path"]
    return path, normalised_query(scope), variant(path, accept)


def _size(value: Any) -> int:
    body = getattr(value, "body", b"")
    return len(body) + 256 if isinstance(body, bytes | bytearray) else 1024


class ReadCache:
    def __init__(
        self,
        head: Callable[[], int],
        ttl: float,
        clock: Any = time.monotonic,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._read_head = head
        self.ttl = ttl
        self._clock = clock
        self._head = -1
        self._checked = float("-inf")
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._bytes = 0
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._watch: Callable[[], Hashable] | None = None
        self._mark: Hashable = _UNREAD
        self._epoch = 0  # invalidations so far
        self._seen = threading.local()  # the epoch as this thread's last lookup saw it

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def head(self) -> int:
        """The log head as last seen, re-read when older than `ttl`."""
        if self._clock() - self._checked >= self.ttl:
            self.advance(self._read_head())
            if self._watch is not None:
                mark = self._watch()
                if mark != self._mark:
                    first = self._mark is _UNREAD
                    self._mark = mark
                    if not first:  # nothing was kept before the mark was known (`watch`)
                        self.invalidate()
        return self._head

    @property
    def epoch(self) -> int:
        """How many invalidations so far: read it before a build, pass it to `put`."""
        return self._epoch

    def watch(self, mark: Callable[[], Hashable]) -> None:
        """Also drop every entry when `mark()`, read with the head, changes (first read at the
        next refresh: the database may not be ready yet). What was kept before is dropped: an
        answer is kept only once the mark is known."""
        self._watch = mark
        self._mark = _UNREAD
        self._checked = float("-inf")
        self.invalidate()

    def invalidate(self) -> None:
        """Drop every entry: something answers show changed without a new event."""
        with self._lock:
            self._epoch += 1
            self._entries = OrderedDict()
            self._bytes = 0

    def advance(self, head: int) -> None:
        """Move to `head` (never back); entries built before it are dropped."""
        with self._lock:
            self._checked = self._clock()
            if head > self._head:
                self._head = head
                self._entries = OrderedDict()
                self._bytes = 0

    def get(self, key: Hashable) -> Any:
        if self.ttl <= 0:
            return None
        self.head  # noqa: B018 (refreshes the head when due)
        with self._lock:
            self._seen.epoch = self._epoch
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def keep(self, key: Hashable, value: Any) -> None:
        """Keep `value`, which no database state can change (a compressed body under the hash
        of its source), as of the current head: counted in the same byte bound, dropped with
        the rest when the head moves."""
        self.put(key, value, self._head)

    def put(
        self, key: Hashable, value: Any, built_at_head: int, *, seen_epoch: int | None = None
    ) -> None:
        """Keep `value`, built from the database as of log head `built_at_head` after `epoch`
        read `seen_epoch` (None: what this thread's last `get` saw), dropping the least
        recently used entries past the byte bound."""
        if self.ttl <= 0:
            return
        size = _size(value)
        if size > self.max_bytes // 4:
            return
        if built_at_head > self._head:
            self.advance(built_at_head)
        if seen_epoch is None:
            seen_epoch = getattr(self._seen, "epoch", 0)
        with self._lock:
            if built_at_head != self._head or seen_epoch != self._epoch:
                return
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= _size(old)
            self._entries[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes or len(self._entries) > MAX_ENTRIES:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= _size(dropped)


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
