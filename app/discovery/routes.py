"""`/feed.atom`, `/pith/{id}/feed.atom`, `/sitemap.xml`, `/robots.txt`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from ..core.context import context_of
from ..records.service import resolve
from .service import atom_feed, robots, sitemap

router = APIRouter(tags=["discovery"])
ATOM = "application/atom+xml; charset=utf-8"
XML = "application/xml; charset=utf-8"


def _content(media_type: str) -> dict[int | str, dict[str, object]]:
    return {200: {"content": {media_type.split(";")[0]: {"schema": {"type": "string"}}}}}


@router.get(
    "/feed.atom",
    summary="Atom feed of new records and events",
    response_class=Response,
    responses=_content(ATOM),
)
async def feed(request: Request) -> Response:
    ctx = context_of(request)

    def build(session: Session) -> tuple[bytes, str]:
        return atom_feed(ctx.base_url, session), ATOM

    return await ctx.serve(request, build)


@router.get(
    "/pith/{pith_id}/feed.atom",
    summary="Atom feed of one record's signed events",
    response_class=Response,
    responses=_content(ATOM),
)
async def record_feed(pith_id: str, request: Request) -> Response:
    ctx = context_of(request)

    def build(session: Session) -> tuple[bytes, str]:
        return atom_feed(ctx.base_url, session, resolve(session, pith_id)), ATOM

    return await ctx.serve(request, build)


@router.get(
    "/sitemap.xml",
    summary="Sitemap of the record pages",
    response_class=Response,
    responses=_content(XML),
)
async def sitemap_route(request: Request) -> Response:
    ctx = context_of(request)

    def build(session: Session) -> tuple[bytes, str]:
        return sitemap(ctx.base_url, session), XML

    return await ctx.serve(request, build)


@router.get(
    "/robots.txt",
    summary="What crawlers may fetch",
    response_class=Response,
    responses=_content("text/plain"),
)
def robots_route(request: Request) -> Response:
    return Response(robots(context_of(request).base_url), media_type="text/plain; charset=utf-8")
