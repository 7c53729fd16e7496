"""HTTP routes of records: the record JSON, name resolution, registering and importing."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from pith_core.canonical import canonical_json
from pith_core.errors import PithError
from pith_core.keys import PUBLIC_REGISTRY_KEY_HEX, public_key_from_hex
from pith_core.number import short_pith_number

from ..core.context import context_of
from ..core.fixed import serve_fixed
from ..core.jsonbody import dumps
from ..core.openapi import CREATED_RESPONSE, JSON_RESPONSE
from ..core.problems import Problem
from ..registry.dependencies import require_admin
from ..registry.service import check_admin
from . import views
from .importing import ImportRefused, read_candidate
from .record_schema import RECORD_SCHEMA_PATH, record_schema
from .schemas import ImportRequest, RegisterPaper
from .service import import_candidates, register_paper, resolve, resolve_alias

router = APIRouter(tags=["records"])


@router.get(
    "/pith/{pith_id}.json",
    summary="The record (shape of the public registry's record JSON)",
    responses=JSON_RESPONSE,
    response_class=Response,
)
async def record_json(pith_id: str, request: Request) -> Response:
    ctx = context_of(request)
    return await ctx.serve(request, views.record_json(ctx, pith_id))


@router.get(
    "/pith/{pith_id}/canonical.json",
    summary="The canonical record alone: its bytes hash to the record's canonical SHA-256",
    description="Purely content-addressed (the Pith number is derived from its hash), so it never "
    "changes: served with immutable Cache-Control when named by full number or 26-character "
    "suffix. The record JSON (/pith/{pith_id}.json) adds the receipt, events and statuses, "
    "which change: it is revalidated by its ETag.",
    responses=JSON_RESPONSE,
    response_class=Response,
)
async def canonical_record(pith_id: str, request: Request) -> Response:
    def build(session: Session) -> tuple[bytes, str]:
        record = resolve(session, pith_id)
        return canonical_json(json.loads(record.canonical_record)), "application/json"

    return await serve_fixed(request, pith_id, build)


@router.get(
    RECORD_SCHEMA_PATH,
    summary="The JSON Schema of the record document (what records name in schema_url)",
    responses=JSON_RESPONSE,
)
def record_schema_route(request: Request) -> JSONResponse:
    return JSONResponse(
        record_schema(context_of(request).base_url), media_type="application/schema+json"
    )


@router.get(
    "/paper/{short}",
    summary="Redirect to the record",
    response_class=RedirectResponse,
    status_code=302,
)
def paper(short: str, request: Request) -> RedirectResponse:
    ctx = context_of(request)
    with ctx.db.read() as session:
        record = resolve(session, short)
    return RedirectResponse(f"{ctx.base_url}/pith/{record.suffix}", status_code=302)


@router.get(
    "/api/pith-number/resolve",
    summary="An alias (arXiv id, DOI, Pith number) to its Pith number",
    responses={**JSON_RESPONSE, 302: {"description": "redirect to the record page"}},
)
def resolve_route(
    request: Request,
    arxiv: Annotated[str | None, Query(max_length=200)] = None,
    doi: Annotated[str | None, Query(max_length=200)] = None,
    pith: Annotated[str | None, Query(max_length=200)] = None,
    json: Annotated[bool, Query(description="answer with JSON instead of a redirect")] = False,
) -> Response:
    given = {k: v for k, v in (("arxiv", arxiv), ("doi", doi), ("pith", pith)) if v is not None}
    if len(given) != 1:
        raise Problem(
            400,
            "one_alias_required",
            "give exactly one of arxiv, doi or pith",
            field="arxiv" if not given else ",".join(sorted(given)),
        )
    ((kind, value),) = given.items()
    ctx = context_of(request)
    with ctx.db.read() as session:
        record = resolve_alias(session, kind, value)
    page = f"{ctx.base_url}/pith/{record.suffix}"
    if not json:
        return RedirectResponse(page, status_code=302)
    return JSONResponse(
        {
            "pith_number": record.pith_number,
            "short_pith_number": short_pith_number(record.pith_number),
            "alias_kind": kind,
            "alias_value": value,
            "canonical_sha256": record.canonical_sha256,
            "html": page,
            "json": f"{page}.json",
        }
    )


@router.get(
    "/api/records",
    summary="Records of this registry, newest first",
    responses=JSON_RESPONSE,
    response_class=Response,
)
async def list_records(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    ctx = context_of(request)
    return await ctx.serve(request, views.record_list(ctx, limit, offset))


def _created(created: bool, body: bytes) -> Response:
    return Response(body, status_code=201 if created else 200, media_type="application/json")


@router.post(
    "/api/records",
    summary="Register a paper (admin): build its record, sign its receipt and events",
    dependencies=[Depends(require_admin)],
    status_code=201,
    responses=CREATED_RESPONSE,
    response_class=Response,
)
def register(
    body: RegisterPaper,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    ctx = context_of(request)
    check_admin(ctx.settings, authorization)
    with ctx.write() as session:
        stored = register_paper(session, ctx.identity, body)
        doc = views.record_doc(ctx, session, stored.record)
    return _created(stored.created, dumps(doc))


def _trusted_key(hex_key: str | None) -> bytes:
    try:
        return public_key_from_hex(hex_key or PUBLIC_REGISTRY_KEY_HEX)
    except PithError as e:
        raise Problem(422, "bad_trusted_key", str(e), field="trusted_key") from e


@router.post(
    "/api/import",
    summary="Import records published by another registry (admin), verified under a trusted key",
    dependencies=[Depends(require_admin)],
    responses=CREATED_RESPONSE,
    response_class=Response,
)
def import_route(
    body: ImportRequest,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    ctx = context_of(request)
    check_admin(ctx.settings, authorization)
    key = _trusted_key(body.trusted_key)
    try:
        candidates = [
            read_candidate(doc.encode("utf-8"), f"documents[{i}]", key)
            for i, doc in enumerate(body.documents)
        ]
    except ImportRefused as e:
        raise Problem(422, "import_refused", e.reason, field=e.source) from e
    with ctx.write() as session:
        stored = import_candidates(session, ctx.identity, candidates)
        result = [
            {
                "pith_number": s.record.pith_number,
                "status": "imported" if s.created else "present",
                "url": f"{ctx.base_url}/pith/{s.record.suffix}",
            }
            for s in stored
        ]
    return _created(any(s.created for s in stored), dumps({"records": result}))
