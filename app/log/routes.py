"""HTTP routes of the transparency log, at the C2SP paths under `/log/`: the checkpoint, tiles
and entry bundles (static-servable), proofs, and witness cosignatures."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from pith_core import note, tiles

from ..core.cache import response_key
from ..core.context import AppContext, Rendered, RenderedResponse, context_of
from ..core.problems import Problem
from ..events.repository import EventRepository
from . import service
from .repository import LogRepository

router = APIRouter(tags=["log"])
NOTE_TYPE = "text/plain; charset=utf-8"
TILE_TYPE = "application/octet-stream"
IMMUTABLE = b"public, max-age=31536000, immutable"
FRESH = b"no-cache"

Build = Callable[[Session], tuple[bytes, str, bool]]  # body, media type, immutable


def signer_of(ctx: AppContext) -> service.LogSigner:
    cached = getattr(ctx, "_log_signer", None)
    if cached is None:
        cached = service.LogSigner.of(ctx.settings, ctx.identity)
        object.__setattr__(ctx, "_log_signer", cached)
    return cached


def log_manifest_entry(ctx: AppContext) -> dict[str, object]:
    """What the signing-key document and the mirror manifest say of the log."""
    signer = signer_of(ctx)
    return {
        "origin": signer.origin,
        "verifier_key": signer.vkey,
        "checkpoint_url": f"{ctx.base_url}/log/checkpoint",
        "tiles_url": f"{ctx.base_url}/log/tile/",
        "witnesses": [
            note.verifier_key(w.name, w.public_key, w.sig_type) for w in signer.witnesses
        ],
        "witness_quorum": signer.quorum,
    }


def _render(ctx: AppContext, build: Build, key: tuple[str, bytes, str] | None) -> Rendered:
    # read here, before the build, not by the lookup on the event loop (another thread)
    seen = ctx.cache.epoch
    with ctx.db.read() as session:
        head = EventRepository(session).head()
        body, media_type, immutable = build(session)
    rendered = Rendered.of(body, media_type)
    control = (b"cache-control", IMMUTABLE if immutable else FRESH)
    rendered = dataclasses.replace(rendered, headers=(*rendered.headers, control))
    if key is not None:
        ctx.cache.put(key, rendered, head, seen_epoch=seen)
    return rendered


async def _serve(request: Request, build: Build, *, cache: bool = True) -> Response:
    ctx = context_of(request)
    key = response_key(request.scope) if cache else None
    hit = ctx.cache.get(key) if key is not None else None
    if hit is None:
        hit = await run_in_threadpool(_render, ctx, build, key)
    return RenderedResponse(hit)


@router.get(
    "/log/checkpoint",
    summary="The log's latest published checkpoint (C2SP tlog-checkpoint signed note)",
    response_class=Response,
)
async def checkpoint(request: Request) -> Response:
    signer = signer_of(context_of(request))

    def build(session: Session) -> tuple[bytes, str, bool]:
        return service.published_checkpoint(session, signer).encode(), NOTE_TYPE, False

    # With witnesses, a cosignature can change the answer without a new event: no cache.
    return await _serve(request, build, cache=not signer.witnesses)


@router.get(
    "/log/checkpoint/unwitnessed",
    summary="The latest checkpoint the log signed, before witnesses cosign it",
    response_class=Response,
)
async def unwitnessed_checkpoint(request: Request) -> Response:
    signer = signer_of(context_of(request))

    def build(session: Session) -> tuple[bytes, str, bool]:
        return service.current_checkpoint(session, signer)[2].encode(), NOTE_TYPE, False

    return await _serve(request, build)


@router.get(
    "/log/tile/{tile_path:path}",
    summary="A hash tile or entry bundle at its C2SP tlog-tiles path",
    response_class=Response,
)
async def tile(tile_path: str, request: Request) -> Response:
    try:
        wanted = tiles.parse_tile_path("tile/" + tile_path)
    except tiles.TileError as e:
        raise Problem(404, "no_such_tile", str(e)) from e

    def build(session: Session) -> tuple[bytes, str, bool]:
        found = service.tile_body(session, wanted)
        if found is None:
            raise Problem(404, "no_such_tile", f"the log has no tile {wanted.path()} (yet)")
        return found[0], TILE_TYPE, found[1]

    return await _serve(request, build)


def _json(doc: object, status: int = 200) -> Response:
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json")


@router.get(
    "/log/proof/consistency",
    summary="A consistency proof between two tree sizes (base64 hashes, RFC 6962 order)",
    response_class=Response,
)
async def consistency(
    request: Request,
    from_size: Annotated[int, Query(alias="from", ge=1, le=2**62)],
    to_size: Annotated[int, Query(alias="to", ge=1, le=2**62)],
) -> Response:
    ctx = context_of(request)

    def run() -> Response:
        with ctx.db.read() as session:
            proof = service.consistency_proof(session, from_size, to_size)
        return _json({"from": from_size, "to": to_size, "proof": proof})

    return await run_in_threadpool(run)


@router.get(
    "/log/proof/inclusion",
    summary="The inclusion proof of a leaf in the tree of a given size",
    response_class=Response,
)
async def inclusion(
    request: Request,
    leaf_index: Annotated[int, Query(ge=0, le=2**62)],
    tree_size: Annotated[int, Query(ge=1, le=2**62)],
) -> Response:
    ctx = context_of(request)

    def run() -> Response:
        with ctx.db.read() as session:
            repo = LogRepository(session)
            if not leaf_index < tree_size <= repo.size():
                raise Problem(
                    400,
                    "bad_tree_sizes",
                    f"need leaf_index < tree_size <= {repo.size()} (the tree size)",
                    field="tree_size",
                )
            proof = service.inclusion_proofs(repo, [leaf_index], tree_size)[leaf_index]
        return _json({"leaf_index": leaf_index, "tree_size": tree_size, "proof": proof})

    return await run_in_threadpool(run)


@router.post(
    "/log/cosignature",
    summary="A configured witness's cosigned checkpoint (the note with its cosignature line)",
    response_class=Response,
)
async def cosignature(request: Request) -> Response:
    ctx = context_of(request)
    raw = await request.body()
    signer = signer_of(ctx)
    if not signer.witnesses:
        raise Problem(403, "no_witnesses", "this log is configured with no witnesses")

    def run() -> Response:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Problem(400, "bad_note", "a note is UTF-8 text") from e
        with ctx.write() as session:
            result = service.add_cosignature(session, signer, text)
        ctx.cache.invalidate()  # pages may say anchored now: no new event moved the head
        return _json(result)

    return await run_in_threadpool(run)


@router.get(
    "/log", summary="What this log is: origin, key, size, where to read it", response_class=Response
)
async def log_info(request: Request) -> Response:
    ctx = context_of(request)
    signer = signer_of(ctx)

    def run() -> Response:
        with ctx.db.read() as session:
            size = LogRepository(session).size()
        return _json(
            {
                "origin": signer.origin,
                "verifier_key": signer.vkey,
                "tree_size": size,
                "witnesses": [w.name for w in signer.witnesses],
                "witness_quorum": signer.quorum,
                "checkpoint": f"{ctx.base_url}/log/checkpoint",
                "tiles": f"{ctx.base_url}/log/tile/",
                "hashing": "RFC 6962: leaf SHA-256(0x00 || entry), node SHA-256(0x01 || l || r)",
                "entry": "the event's canonical JSON, as served in bundles",
            }
        )

    return await run_in_threadpool(run)
