"""`/pith/{id}/badge.svg`, `/pith/{id}/citation.bib`, `/pith/{id}/citation.json` (CSL-JSON)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from ..core.context import context_of
from ..records.service import resolve
from ..records.views import record_doc
from .badge import badge_for, render_svg
from .citation import bibtex, csl_json_bytes

router = APIRouter(tags=["exports"])
SVG = "image/svg+xml"
BIBTEX = "application/x-bibtex; charset=utf-8"
CSL = "application/vnd.citationstyles.csl+json"


def _content(media_type: str) -> dict[int | str, dict[str, object]]:
    return {200: {"content": {media_type.split(";")[0]: {"schema": {"type": "string"}}}}}


@router.get(
    "/pith/{pith_id}/badge.svg",
    summary="An SVG badge of the record: what was verified (receipt, anchor, storage, replication)",
    response_class=Response,
    responses=_content(SVG),
)
async def badge(pith_id: str, request: Request) -> Response:
    ctx = context_of(request)

    def build(session: Session) -> tuple[bytes, str]:
        doc = record_doc(ctx, session, resolve(session, pith_id))
        return render_svg(badge_for(doc)), SVG

    return await ctx.serve(request, build)


@router.get(
    "/pith/{pith_id}/citation.bib",
    summary="The record as a BibTeX entry",
    response_class=Response,
    responses=_content(BIBTEX),
)
async def citation_bibtex(pith_id: str, request: Request) -> Response:
    ctx = context_of(request)

    def build(session: Session) -> tuple[bytes, str]:
        doc = record_doc(ctx, session, resolve(session, pith_id))
        return bibtex(doc).encode("utf-8"), BIBTEX

    return await ctx.serve(request, build)


@router.get(
    "/pith/{pith_id}/citation.json",
    summary="The record as CSL-JSON (Zotero, pandoc, citeproc)",
    response_class=Response,
    responses=_content(CSL),
)
async def citation_csl(pith_id: str, request: Request) -> Response:
    ctx = context_of(request)

    def build(session: Session) -> tuple[bytes, str]:
        return csl_json_bytes(record_doc(ctx, session, resolve(session, pith_id))), CSL

    return await ctx.serve(request, build)
