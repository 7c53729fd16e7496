"""HTTP as clients expect it, in pure ASGI middlewares around the routes: HEAD and OPTIONS
wherever GET is, `Cache-Control` per kind of document, and large answers compressed in a worker
thread, once per body (CORS and the compression of small or streamed answers are Starlette's and
starlette-compress's, wired in `install`).

HEAD runs the GET route and sends its headers without the body (so Content-Length, ETag and
Cache-Control are the GET's). OPTIONS answers 204 with `Allow` from the routes that match the
path; a CORS preflight (with `Access-Control-Request-Method`) is answered by the CORS layer.
"""

from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import brotli
import zstandard
from anyio import to_thread
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette_compress import CompressMiddleware

from .cache import ReadCache
from .problems import Problem, problem_response

# What a browser app on another origin may read: the public read API. Writes stay same-origin
# (a signed event is better posted by an agent than by a page).
CORS_METHODS = ("GET", "HEAD", "OPTIONS")
CORS_EXPOSED = ("ETag", "Link", "Location", "Retry-After", "Content-Length", "Content-Encoding")
COMPRESS_MIN_BYTES = 1024
# Answers this large are compressed in a worker thread: zstd of a 12 MB state.json takes ~60 ms
# of CPU, which on the event loop stalls every other request (/healthz waited seconds).
OFFLOAD_MIN_BYTES = 64 * 1024

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "public, no-cache"  # stored by a cache, revalidated with the ETag (cheap 304)
SHORT = "public, max-age=60"
NO_STORE = "no-store"


@dataclass(frozen=True)
class CacheRule:
    path: re.Pattern[str]
    value: str


# First match wins. Immutable: what is named by its content or by a fixed log size never changes.
CACHE_RULES: tuple[CacheRule, ...] = (
    CacheRule(re.compile(r"/log/tile/(?!.*\.p/).+"), IMMUTABLE),  # full tiles (C2SP tlog-tiles)
    CacheRule(re.compile(r"/log/tile/.+"), SHORT),  # partial tiles grow into full ones
    CacheRule(re.compile(r"/static-offline-docs/.+"), "public, max-age=86400"),
    CacheRule(re.compile(r"/(feed\.atom|sitemap\.xml|robots\.txt)"), SHORT),
    CacheRule(re.compile(r"/pith/[^/]+/badge\.svg"), SHORT),
    CacheRule(re.compile(r"/api/jobs(/.*)?|/api/workers(/.*)?"), NO_STORE),
)


def cache_control(path: str, query: bytes) -> str:
    """The Cache-Control of a successful GET of `path` (default: cache, but revalidate)."""
    for rule in CACHE_RULES:
        if rule.path.fullmatch(path):
            return rule.value
    return REVALIDATE


class CacheControlMiddleware:
    """Adds Cache-Control to successful GET/HEAD answers that do not set their own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        value = cache_control(scope["path"], scope.get("query_string", b"")).encode()

        async def with_cache_control(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                status = message["status"]
                if (status == 200 or status == 304) and not any(
                    name.lower() == b"cache-control" for name, _ in headers
                ):
                    headers.append((b"cache-control", value))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_cache_control)


def _methods_at(routes: list[Any], scope: Scope) -> set[str]:
    """The methods of every route matching the path. An included router (FastAPI keeps it as
    one entry wrapping the original router) is searched with its prefix taken off the path."""
    methods: set[str] = set()
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            prefix = route.include_context.prefix
            if scope["path"].startswith(prefix):
                rest = scope["path"][len(prefix) :] or "/"
                methods |= _methods_at(inner.routes, {**scope, "path": rest})
            continue
        match, _ = route.matches(scope)
        if match != Match.NONE:
            methods.update(getattr(route, "methods", None) or {"GET"})  # a mount answers GET
    return methods


def _is_preflight(scope: Scope) -> bool:
    return any(name == b"access-control-request-method" for name, _ in scope["headers"])


class HeadOptionsMiddleware:
    """HEAD as the GET without its body; OPTIONS answered with the path's allowed methods."""

    def __init__(self, app: ASGIApp, *, router: Router) -> None:
        self.app = app
        self.router = router

    def allowed(self, scope: Scope) -> list[str]:
        methods = _methods_at(self.router.routes, {**scope, "method": "GET"})
        if "GET" in methods:
            methods.add("HEAD")
        if methods:
            methods.add("OPTIONS")
        order = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
        return sorted(methods, key=lambda m: order.index(m) if m in order else len(order))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method == "HEAD":
            await self._head(scope, receive, send)
        elif method == "OPTIONS" and not _is_preflight(scope):
            await self._options(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _head(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)

    async def _options(self, scope: Scope, receive: Receive, send: Send) -> None:
        methods = self.allowed(scope)
        if not methods:
            problem = Problem(404, "not_found", f"no resource at {scope['path']}")
            await problem_response(problem, scope["path"])(scope, receive, send)
            return
        headers = [(b"allow", ", ".join(methods).encode()), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def _compress_zstd(body: bytes) -> bytes:
    # level 1: on JSON states as fast as gzip -1 is slow, and no larger than zstd's level 4
    return zstandard.ZstdCompressor(level=1).compress(body)


def _compress_br(body: bytes) -> bytes:
    return bytes(brotli.compress(body, quality=4))


def _compress_gzip(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=4)


# In the server's order of preference (starlette-compress's: zstd, then br, then gzip).
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "zstd": _compress_zstd,
    "br": _compress_br,
    "gzip": _compress_gzip,
}
_RENDERED_ETAG = re.compile(rb'"[0-9a-f]{32}"')  # app.core.context.Rendered: SHA-256 of the body


def preferred_encoding(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The encoding of `COMPRESSORS` to answer in: the first in the server's order that
    Accept-Encoding allows (a coding named with q=0 is refused, `*` allows the others)."""
    allowed: set[str] = set()
    refused: set[str] = set()
    wildcard = False
    for name, value in headers:
        if name != b"accept-encoding":
            continue
        for item in value.decode("latin-1").split(","):
            coding, _, params = item.partition(";")
            coding = coding.strip().lower()
            q = 1.0
            for param in params.split(";"):
                key, _, number = param.partition("=")
                if key.strip().lower() == "q":
                    try:
                        q = float(number)
                    except ValueError:
                        q = 0.0
            if q <= 0:
                refused.add(coding)
            elif coding == "*":
                wildcard = True
            else:
                allowed.add(coding)
    for coding in COMPRESSORS:
        if coding not in refused and (coding in allowed or wildcard):
            return coding
    return None


def _header(message: Message, name: bytes) -> bytes | None:
    for key, value in message.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def _compressible(start: Message) -> bool:
    """A success with a body (any 2xx but 204 and 206: a batch's 201 too) whose body is text
    (JSON, HTML, XML, SVG...) and not encoded already."""
    status = start["status"]
    if not 200 <= status < 300 or status in (204, 206):
        return False
    if _header(start, b"content-encoding") or _header(start, b"content-range"):
        return False
    media = (_header(start, b"content-type") or b"").split(b";", 1)[0].strip().lower()
    return media.startswith(b"text/") or media.endswith((b"json", b"xml"))


class Encoded:
    """A compressed body kept in the read cache (sized by its `body`, like a rendering)."""

    __slots__ = ("body",)

    def __init__(self, body: bytes) -> None:
        self.body = body


class OffloadedCompressionMiddleware:
    """Compresses large one-shot answers in a worker thread, never on the event loop, and keeps
    each compressed body in the read cache under its ETag and encoding, so a body is compressed
    once per change however many readers ask (cache busters included). Smaller or streamed
    answers pass through to starlette-compress as before."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        cache: ReadCache | None = None,
        minimum_size: int = OFFLOAD_MIN_BYTES,
    ) -> None:
        self.app = app
        self.cache = cache
        self.minimum_size = minimum_size
        self._inflight: dict[tuple[bytes, int, str], asyncio.Task[bytes]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        encoding = None
        if scope["type"] == "http":  # any method: a batch's answer is hundreds of KiB too
            encoding = preferred_encoding(scope["headers"])
        if encoding is None:
            await self.app(scope, receive, send)
            return
        held: Message | None = None

        async def compressing(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and _compressible(message):
                held = message
                return
            if held is None:
                await send(message)
                return
            start, held = held, None
            body = message.get("body", b"")
            if (
                message["type"] != "http.response.body"
                or message.get("more_body", False)
                or len(body) < self.minimum_size
            ):
                await send(start)
                await send(message)
                return
            packed = await self._encode(body, encoding, _header(start, b"etag"))
            vary = _header(start, b"vary")
            headers = [
                (k, v) for k, v in start["headers"] if k.lower() not in (b"content-length", b"vary")
            ]
            headers += [
                (b"content-encoding", encoding.encode()),
                (b"content-length", str(len(packed)).encode()),
                (b"vary", vary + b", Accept-Encoding" if vary else b"Accept-Encoding"),
            ]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": packed})

        await self.app(scope, receive, compressing)

    async def _encode(self, body: bytes, encoding: str, etag: bytes | None) -> bytes:
        """`body` compressed in a worker thread; with a rendering's ETag (the hash of the body)
        taken from the read cache or compressed once for all concurrent askers."""
        compress = COMPRESSORS[encoding]
        if etag is None or not _RENDERED_ETAG.fullmatch(etag):
            return await to_thread.run_sync(compress, body)
        key = (etag, len(body), encoding)
        cached = self.cache.get(("encoded", *key)) if self.cache is not None else None
        if cached is not None:
            return bytes(cached.body)
        task = self._inflight.get(key)
        if task is None:
            # Its own task, each asker shielded from it: one asker's disconnect cancels only
            # that asker's wait, never the compression the others are waiting on.
            task = asyncio.ensure_future(self._compress_and_keep(compress, body, key))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: tuple[bytes, int, str], task: asyncio.Task[bytes]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: every asker may have gone before it ended

    async def _compress_and_keep(
        self, compress: Callable[[bytes], bytes], body: bytes, key: tuple[bytes, int, str]
    ) -> bytes:
        packed = await to_thread.run_sync(compress, body)
        if self.cache is not None:
            self.cache.keep(("encoded", *key), Encoded(packed))
        return packed


def install(app: FastAPI, *, cache: ReadCache | None = None) -> None:
    """Wire the layers; FastAPI's last added middleware is the outermost, so the order of the
    request is HEAD/OPTIONS, CORS, compression (small and streamed answers), compression of
    large ones (kept in `cache`, by default the read cache of the app's context), Cache-Control,
    then the app's own."""
    if cache is None:
        cache = getattr(getattr(app.state, "ctx", None), "cache", None)
    app.add_middleware(CacheControlMiddleware)
    app.add_middleware(OffloadedCompressionMiddleware, cache=cache)
    app.add_middleware(CompressMiddleware, minimum_size=COMPRESS_MIN_BYTES)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=list(CORS_METHODS),
        allow_headers=["Accept", "If-None-Match", "Content-Type"],
        expose_headers=list(CORS_EXPOSED),
        max_age=86400,
    )
    app.add_middleware(HeadOptionsMiddleware, router=app.router)
