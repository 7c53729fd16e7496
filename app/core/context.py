"""What a request needs from the application: settings, database, identity, read cache."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..registry.service import RegistryIdentity
from ..settings import Settings
from ..storage.engine import Database
from .cache import ReadCache, ResponseKey, response_key


@dataclass(frozen=True)
class Rendered:
    """A read response built once and served from the cache: body, media type, ETag."""

    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]  # content-type, content-length, etag[, vary]
    etag: bytes

    @classmethod
    def of(cls, body: bytes, media_type: str, *, vary: bool = False) -> Rendered:
        etag = b'"' + hashlib.sha256(body).hexdigest()[:32].encode() + b'"'
        headers = [
            (b"content-type", media_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"etag", etag),
        ]
        if vary:
            headers.append((b"vary", b"Accept"))
        return cls(body, tuple(headers), etag)

    async def send(self, scope: Scope, send: Send) -> None:
        """Send as an ASGI response (304 without a body when If-None-Match names it)."""
        for name, value in scope["headers"]:
            if name == b"if-none-match" and value == self.etag:
                headers = [h for h in self.headers if h[0] in (b"etag", b"vary")]
                await send({"type": "http.response.start", "status": 304, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
        await send({"type": "http.response.start", "status": 200, "headers": list(self.headers)})
        await send({"type": "http.response.body", "body": self.body})


class RenderedResponse(Response):
    """A `Rendered` returned from a route."""

    def __init__(self, rendered: Rendered) -> None:
        super().__init__(rendered.body)
        self.rendered = rendered
        self.raw_headers = list(rendered.headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.rendered.send(scope, send)


_RENDER_STRIPES = tuple(threading.Lock() for _ in range(64))


@dataclass
class AppContext:
    settings: Settings
    db: Database
    identity: RegistryIdentity
    cache: ReadCache
    inflight: dict[ResponseKey, asyncio.Future[Rendered]] = field(default_factory=dict)
    # One event batch at a time in this process. A batch is CPU-bound Python (parse, verify,
    # store, prove) and its writes queue on the log lock anyway: two at once took as long as
    # two in turn (measured: 8,300 events/s either way) for 38% more CPU (the GIL's hand-offs)
    # and twice the memory. More processes (PITH_WORKERS) verify in parallel.
    ingest_gate: asyncio.Lock = field(default_factory=asyncio.Lock)
    log_append: bool = True  # False only in bench/log.py's log-less server (create_app)

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    def render(self, key: ResponseKey, build: Callable[[Session], tuple[bytes, str]]) -> Rendered:
        """`build(session)` → (body, media type) in a read unit, cached as of the log head.

        Call from a worker thread (it queries the database)."""
        from ..events import state as state_store
        from ..events.repository import EventRepository

        with _RENDER_STRIPES[hash(key) % len(_RENDER_STRIPES)]:
            # concurrent misses of one key render once: the others find the entry
            hit = self.cache.get(key)
            if hit is not None:
                return hit
            return self._render(key, build, state_store, EventRepository)

    def _render(
        self,
        key: ResponseKey,
        build: Callable[[Session], tuple[bytes, str]],
        state_store: Any,
        repository: Any,
    ) -> Rendered:
        for attempt in range(3):
            try:
                # a stale state is brought up to date outside this read unit, so a reader
                # waiting for another's refresh holds no database connection
                with state_store.deferred_refresh(attempt < 2), self.db.read() as session:
                    head = repository(session).head()
                    body, media_type = build(session)
                break
            except state_store.StateStale as stale:
                state_store.refresh(self.db, self.identity, stale.subject)
        rendered = Rendered.of(body, media_type, vary=key[2] != "")
        self.cache.put(key, rendered, head)
        return rendered

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write unit of work; once committed, this worker's read cache moves past it."""
        from ..events.repository import EventRepository
        from ..log.service import LOG_APPEND

        with self.db.write() as session:
            if not self.log_append:  # bench/log.py's measure of ingest without the log
                session.info[LOG_APPEND] = False
            yield session
            head = EventRepository(session).head()
        self.cache.advance(head)

    async def serve(
        self, request: Request, build: Callable[[Session], tuple[bytes, str]]
    ) -> Response:
        """The cached rendering of what `request` asks for, or a fresh one built in a worker
        thread (the route's own path, when `CachedReadMiddleware` did not answer first)."""
        key = response_key(request.scope)
        hit = self.cache.get(key)
        if hit is None:
            hit = await self._render_once(key, build)
        return RenderedResponse(hit)

    async def _render_once(
        self, key: ResponseKey, build: Callable[[Session], tuple[bytes, str]]
    ) -> Rendered:
        """One render of `key` in flight in this process: later askers await it on the event
        loop instead of each taking a worker thread to wait in (which starved /healthz)."""
        pending = self.inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Rendered] = asyncio.get_running_loop().create_future()
        self.inflight[key] = future
        try:
            rendered = await run_in_threadpool(self.render, key, build)
            future.set_result(rendered)
            return rendered
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved here: askers that awaited it get it too
            raise
        finally:
            del self.inflight[key]


def context_of(request: Request) -> AppContext:
    ctx: Any = request.app.state.ctx
    return ctx
