"""HTTP as clients expect it, in pure ASGI middlewares around the routes: HEAD and OPTIONS
wherever GET is, and `Cache-Control` per kind of document (CORS and compression are Starlette's
and starlette-compress's, wired in `install`).

HEAD runs the GET route and sends its headers without the body (so Content-Length, ETag and
Cache-Control are the GET's). OPTIONS answers 204 with `Allow` from the routes that match the
path; a CORS preflight (with `Access-Control-Request-Method`) is answered by the CORS layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette_compress import CompressMiddleware

from .problems import Problem, problem_response

# What a browser app on another origin may read: the public read API. Writes stay same-origin
# (a signed event is better posted by an agent than by a page).
CORS_METHODS = ("GET", "HEAD", "OPTIONS")
CORS_EXPOSED = ("ETag", "Link", "Location", "Retry-After", "Content-Length", "Content-Encoding")
COMPRESS_MIN_BYTES = 1024

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


def install(app: FastAPI) -> None:
    """Wire the layers; FastAPI's last added middleware is the outermost, so the order of the
    request is HEAD/OPTIONS, CORS, compression, Cache-Control, then the app's own."""
    app.add_middleware(CacheControlMiddleware)
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
