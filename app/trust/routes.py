"""HTTP routes of the trust policy: payload schemas (JSON Schema) and the policy itself."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..core.context import context_of
from ..core.openapi import JSON_RESPONSE
from ..core.problems import not_found
from .payloads import PAYLOAD_MODELS, json_schemas
from .policy import policy_for

router = APIRouter(tags=["trust"])


@router.get(
    "/schemas/", summary="The payload schemas events are checked against", responses=JSON_RESPONSE
)
def schema_index(request: Request) -> Response:
    base = context_of(request).base_url
    return JSONResponse(
        {"schemas": {t: f"{base}/schemas/{t}.json" for t in PAYLOAD_MODELS}},
    )


@router.get(
    "/schemas/{target}.json",
    summary="The JSON Schema of one target's payload",
    responses=JSON_RESPONSE,
)
def schema(target: str, request: Request) -> Response:
    if target not in PAYLOAD_MODELS:
        raise not_found(f"no payload schema for {target[:64]!r}; see /schemas/")
    doc = json_schemas(context_of(request).base_url)[target]
    return JSONResponse(doc, media_type="application/schema+json")


@router.get(
    "/trust-policy.json", summary="What moves a verification status", responses=JSON_RESPONSE
)
def trust_policy(request: Request) -> Response:
    ctx = context_of(request)
    return JSONResponse(policy_for(ctx.settings, ctx.identity).describe())
