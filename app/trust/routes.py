"""HTTP routes of the trust policy: payload schemas (JSON Schema) and the policy itself."""

from __future__ import annotations

import functools
import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..core.context import context_of
from ..core.openapi import JSON_RESPONSE
from ..core.problems import not_found
from .payloads import PAYLOAD_MODELS, json_schemas
from .policy import policy_for

router = APIRouter(tags=["trust"])
SCHEMA_MEDIA_TYPE = "application/schema+json"


@functools.lru_cache(maxsize=8)
def schema_bodies(base_url: str) -> dict[str, bytes]:
    """The served bytes of each target's schema and of the index (key ""), built once per
    process and base URL: the payload models do not change while it runs."""

    def body(doc: object) -> bytes:  # as JSONResponse renders
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()

    out = {t: body(doc) for t, doc in json_schemas(base_url).items()}
    out[""] = body({"schemas": {t: f"{base_url}/schemas/{t}.json" for t in PAYLOAD_MODELS}})
    return out


@router.get(
    "/schemas/", summary="The payload schemas events are checked against", responses=JSON_RESPONSE
)
def schema_index(request: Request) -> Response:
    body = schema_bodies(context_of(request).base_url)[""]
    return Response(body, media_type="application/json")


@router.get(
    "/schemas/{target}.json",
    summary="The JSON Schema of one target's payload",
    responses=JSON_RESPONSE,
)
def schema(target: str, request: Request) -> Response:
    if target not in PAYLOAD_MODELS:
        raise not_found(f"no payload schema for {target[:64]!r}; see /schemas/")
    body = schema_bodies(context_of(request).base_url)[target]
    return Response(body, media_type=SCHEMA_MEDIA_TYPE)


@router.get(
    "/trust-policy.json", summary="What moves a verification status", responses=JSON_RESPONSE
)
def trust_policy(request: Request) -> Response:
    ctx = context_of(request)
    return JSONResponse(policy_for(ctx.settings, ctx.identity).describe())
