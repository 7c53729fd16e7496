"""HTTP routes of the registry's identity: its signing key, its mirror manifest, health."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..core.context import context_of
from ..core.openapi import JSON_RESPONSE
from ..events.repository import EventRepository
from ..log.routes import log_manifest_entry
from .rotation import key_history_document
from .service import mirror_manifest, signing_key_document

router = APIRouter(tags=["registry"])


@router.get(
    "/pith-signing-key.json", summary="This registry's public signing key", responses=JSON_RESPONSE
)
def signing_key(request: Request) -> Response:
    ctx = context_of(request)
    doc = signing_key_document(ctx.identity, ctx.base_url)
    doc["transparency_log"] = log_manifest_entry(ctx)
    doc.update(key_history_document(ctx.settings, ctx.identity))
    return JSONResponse(doc)


@router.get("/pith-mirrors.json", summary="The mirror manifest", responses=JSON_RESPONSE)
def mirrors(request: Request) -> Response:
    ctx = context_of(request)
    doc = mirror_manifest(ctx.identity, ctx.base_url)
    doc["transparency_log"] = log_manifest_entry(ctx)
    doc.update(key_history_document(ctx.settings, ctx.identity))
    return JSONResponse(doc)


@router.get("/healthz", summary="Liveness and the event log's head", responses=JSON_RESPONSE)
def health(request: Request) -> Response:
    ctx = context_of(request)
    with ctx.db.read() as session:
        head = EventRepository(session).head()
    return JSONResponse({"status": "ok", "log_head": head, "fingerprint": ctx.identity.fingerprint})
