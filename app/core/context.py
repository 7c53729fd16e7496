"""What a request needs from the application: settings, database, identity, read cache."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ..registry.service import RegistryIdentity
from ..settings import Settings
from ..storage.engine import Database
from .cache import ReadCache


@dataclass(frozen=True)
class Rendered:
    """A read response built once and served from the cache: body, media type, ETag."""

    body: bytes
    media_type: str
    etag: str
    status: int = 200

    @classmethod
    def of(cls, body: bytes, media_type: str) -> Rendered:
        return cls(body, media_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')

    def response(self, request: Request, extra_headers: dict[str, str] | None = None) -> Response:
        headers = {"ETag": self.etag, **(extra_headers or {})}
        if request.headers.get("if-none-match") == self.etag:
            return Response(status_code=304, headers=headers)
        return Response(self.body, self.status, headers=headers, media_type=self.media_type)


@dataclass
class AppContext:
    settings: Settings
    db: Database
    identity: RegistryIdentity
    cache: ReadCache

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    def render(self, key: Hashable, build: Callable[[Session], tuple[bytes, str]]) -> Rendered:
        """`build(session)` → (body, media type) in a read unit, cached as of the log head.

        Call from a worker thread (it queries the database)."""
        from ..events.repository import EventRepository

        with self.db.read() as session:
            head = EventRepository(session).head()
            body, media_type = build(session)
        rendered = Rendered.of(body, media_type)
        self.cache.put(key, rendered, head)
        return rendered

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write unit of work; once committed, this worker's read cache moves past it."""
        from ..events.repository import EventRepository

        with self.db.write() as session:
            yield session
            head = EventRepository(session).head()
        self.cache.advance(head)

    async def serve(self, key: Hashable, build: Callable[[Session], tuple[bytes, str]]) -> Rendered:
        """The cached rendering of `key`, or a fresh one built in a worker thread."""
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        return await run_in_threadpool(self.render, key, build)


def context_of(request: Request) -> AppContext:
    ctx: Any = request.app.state.ctx
    return ctx
