"""Serving what can never change (a record's canonical JSON, events or a bundle at a fixed log
size) with immutable Cache-Control, through the read cache under a key of its own.

`CacheControlMiddleware` gives every answer without its own Cache-Control the revalidating
default, and `CachedReadMiddleware` answers a cache hit before the route runs; so a fixed answer
is cached under a key the middleware never looks up, and the route adds the header itself.

Most fixed answers are cheap reads (canonical JSON, a page of events). One that must merge a
record's events afresh (a bundle at a historical size) calls `heavy_read` first: only that
costs the client a write token, paid outside any read unit before the build runs again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextvars import ContextVar

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from pith_core.errors import PithNumberError
from pith_core.number import parse_pith_id

from .cache import ResponseKey, response_key
from .context import AppContext, Rendered, RenderedResponse, context_of
from .guard import CHARGE_AS_WRITE
from .http import IMMUTABLE
from .problems import Problem
from .ratelimit import LimiterUnavailable

SUFFIX_LENGTH = 26
# False while a fixed build runs whose client has not paid for heavy work yet
_HEAVY_PAID: ContextVar[bool] = ContextVar("pith_heavy_read_paid", default=True)


class HeavyRead(Exception):
    """A fixed build reached costly work its client has not paid for yet."""


def heavy_read() -> None:
    """Called by a build about to do costly work (a full merge): raises `HeavyRead` unless the
    request paid its write token already (or is charged nothing: no limiter, not a request)."""
    if not _HEAVY_PAID.get():
        raise HeavyRead


class FixedResponse(RenderedResponse):
    """A cached rendering sent with its own Cache-Control (on 200 and 304 alike)."""

    def __init__(self, rendered: Rendered, cache_control: str = IMMUTABLE) -> None:
        super().__init__(rendered)
        self.cache_control = cache_control.encode()
        self.raw_headers.append((b"cache-control", self.cache_control))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_cache_control(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), (b"cache-control", self.cache_control)]
                message = {**message, "headers": headers}
            await send(message)

        await self.rendered.send(scope, with_cache_control)


def names_one_record_forever(pith_id: str) -> bool:
    """Whether `pith_id` is a full number or a whole suffix: names that can never come to mean
    another record (a prefix can become ambiguous, an arXiv id can gain a version)."""
    try:
        pid = parse_pith_id(pith_id)
    except PithNumberError:
        return False
    return pid.is_full or len(pid.prefix) == SUFFIX_LENGTH


async def _charge_as_write(request: Request) -> None:
    """A fixed answer that merges afresh (a historical log size) costs the client a write
    token, so one client cannot loop distinct sizes or cursors."""
    charge = request.scope.get(CHARGE_AS_WRITE)
    if charge is None:
        return
    try:
        wait = await charge()
    except LimiterUnavailable:
        raise Problem(
            503,
            "busy",
            "the rate limiter's database is unavailable; retry shortly",
            headers={"Retry-After": "1"},
        ) from None
    if wait > 0:
        retry = max(1, math.ceil(wait))
        raise Problem(
            429,
            "rate_limited",
            f"too many fixed-size reads needing a fresh merge from this client; retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )


def _render(
    ctx: AppContext, key: ResponseKey, build: Callable[[Session], tuple[bytes, str]], paid: bool
) -> Rendered:
    token = _HEAVY_PAID.set(paid)
    try:
        return ctx.render(key, build)
    finally:
        _HEAVY_PAID.reset(token)


async def serve_fixed(
    request: Request, pith_id: str, build: Callable[[Session], tuple[bytes, str]]
) -> Response:
    """The rendering of a document that never changes once it exists: immutable when `pith_id`
    names its record for good, else revalidated by its ETag like any read."""
    ctx = context_of(request)
    path, query, representation = response_key(request.scope)
    key = (f"fixed:{path}", query, representation)
    rendered = ctx.cache.get(key)
    if rendered is None:
        charged = request.scope.get(CHARGE_AS_WRITE) is not None
        try:
            rendered = await run_in_threadpool(_render, ctx, key, build, not charged)
        except HeavyRead:
            await _charge_as_write(request)  # outside the read unit: it is a write
            rendered = await run_in_threadpool(_render, ctx, key, build, True)
    if not names_one_record_forever(pith_id):
        return RenderedResponse(rendered)
    return FixedResponse(rendered)
