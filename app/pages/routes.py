"""HTML routes: the index and the record page (`/pith/{id}` answers JSON when asked)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from ..core.context import context_of
from ..core.negotiation import HTML, wants_json
from ..exports.citation import authors_of
from ..records import views as record_views
from ..search.service import MAX_QUERY_CHARS, index_page_context
from .charts import replication_charts
from .service import record_page_context
from .templating import templates

router = APIRouter(tags=["pages"])
PAGE_RESPONSES = {
    200: {
        "content": {
            "text/html": {"schema": {"type": "string"}},
            "application/ld+json": {"schema": {"type": "object"}},
            "application/json": {"schema": {"type": "object"}},
        }
    }
}


@router.get(
    "/",
    summary="Index page: search and every record, a page at a time",
    response_class=Response,
    responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}}},
)
async def index(
    request: Request,
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
) -> Response:
    ctx = context_of(request)

    def build(session: Session) -> tuple[bytes, str]:
        context = {
            "base_url": ctx.base_url,
            "fingerprint": ctx.identity.fingerprint,
            **index_page_context(ctx.base_url, session, q, page),
        }
        return templates.get_template("index.html").render(context).encode("utf-8"), HTML

    return await ctx.serve(request, build)


@router.get(
    "/pith/{pith_id}",
    summary="The record page; the record JSON with Accept: application/ld+json or application/json",
    response_class=Response,
    responses=PAGE_RESPONSES,
)
async def record_page(pith_id: str, request: Request) -> Response:
    ctx = context_of(request)
    json_type = wants_json(request.headers.get("accept", ""))
    if json_type is not None:
        return await ctx.serve(request, record_views.record_json(ctx, pith_id, json_type))

    def build_page(session: Session) -> tuple[bytes, str]:
        context = record_page_context(ctx, session, pith_id)
        context["citation_authors"] = authors_of(context["paper"])
        context["charts"] = replication_charts(context["state"]["current"]["replication_records"])
        return templates.get_template("record.html").render(context).encode("utf-8"), HTML

    return await ctx.serve(request, build_page)
