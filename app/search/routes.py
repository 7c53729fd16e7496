"""`GET /api/search`: records by title, author, arXiv id, DOI or Pith number, a page at a time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from ..core.context import context_of
from ..core.openapi import JSON_RESPONSE
from ..records.views import JSON, dumps
from .service import MAX_QUERY_CHARS, search, search_document

router = APIRouter(tags=["search"])
API_PER_PAGE = 20


@router.get(
    "/api/search",
    summary="Search records by title, author, arXiv id, DOI or Pith number",
    description="Words match titles, authors and abstracts (every word, as a prefix; English "
    "stems count). An identifier answers with its record. An empty query lists every record, "
    "newest first. `next`/`prev` link the neighbouring pages.",
    responses=JSON_RESPONSE,
    response_class=Response,
)
async def search_route(
    request: Request,
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS)] = "",
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = API_PER_PAGE,
) -> Response:
    ctx = context_of(request)

    def build(session: Session) -> tuple[bytes, str]:
        result = search(session, q, page, per_page)
        return dumps(search_document(ctx.base_url, "/api/search", result, API_PER_PAGE)), JSON

    return await ctx.serve(request, build)
