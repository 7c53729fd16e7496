"""HTML routes: the index and the record page (`/pith/{id}` answers JSON when asked)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session

from ..core.context import context_of
from ..records import views as record_views
from .service import index_context, record_page_context

router = APIRouter(tags=["pages"])
HTML = "text/html; charset=utf-8"
templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)
PAGE_RESPONSES = {
    200: {
        "content": {
            "text/html": {"schema": {"type": "string"}},
            "application/ld+json": {"schema": {"type": "object"}},
            "application/json": {"schema": {"type": "object"}},
        }
    }
}


def wants_json(accept: str) -> str | None:
    """The JSON media type the client asks for, or None when it wants the page.

    JSON-LD or JSON wins unless HTML is listed before it (as browsers do)."""
    accept = accept.lower()
    positions = {
        m: accept.find(m) for m in ("application/ld+json", "application/json", "text/html")
    }
    html_at = positions.pop("text/html")
    found = sorted((at, m) for m, at in positions.items() if at >= 0)
    if not found or (0 <= html_at < found[0][0]):
        return None
    return found[0][1]


@router.get(
    "/",
    summary="Index page",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}}},
)
async def index(request: Request) -> Response:
    ctx = context_of(request)

    def build(session: Session) -> tuple[bytes, str]:
        html = templates.get_template("index.html").render(index_context(ctx, session))
        return html.encode("utf-8"), HTML

    rendered = await ctx.serve(("index",), build)
    return rendered.response(request)


@router.get(
    "/pith/{pith_id}",
    summary="The record page; the record JSON with Accept: application/ld+json or application/json",
    response_class=Response,
    responses=PAGE_RESPONSES,
)
async def record_page(pith_id: str, request: Request) -> Response:
    ctx = context_of(request)
    json_type = wants_json(request.headers.get("accept", ""))
    vary = {"Vary": "Accept"}
    if json_type is not None:
        build = record_views.record_json(ctx, pith_id, json_type)
        rendered = await ctx.serve(("record", pith_id, json_type), build)
        return rendered.response(request, vary)

    def build_page(session: Session) -> tuple[bytes, str]:
        page = templates.get_template("record.html").render(
            record_page_context(ctx, session, pith_id)
        )
        return page.encode("utf-8"), HTML

    rendered = await ctx.serve(("page", pith_id), build_page)
    return rendered.response(request, vary)
