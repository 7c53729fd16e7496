"""HTTP routes of events: the action URLs, batches, the changes feed, states and bundles."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from ..core.context import AppContext, context_of
from ..core.fixed import serve_fixed
from ..core.jsonbody import dumps
from ..core.openapi import CREATED_RESPONSE, JSON_RESPONSE
from ..core.problems import Problem
from ..log.routes import signer_of as log_signer_of
from ..log.service import event_log_object
from ..log.service import proofs_for_events as log_proofs
from ..records.service import resolve
from . import listing, views
from .schemas import BATCH_BODY, EVENT_BODY
from .service import (
    ACTION_TARGETS,
    Clock,
    StoredEvent,
    check_event,
    decode_cursor,
    ingest_batch,
    parse_event_body,
    submit_action,
)

router = APIRouter(tags=["events"])


class Action(StrEnum):
    """The action URLs of DESIGN §3 (each takes one target: see ACTION_TARGETS)."""

    timestamp_anchor = "timestamp_anchor"
    storage_attestation = "storage_attestation"
    author_attestation = "author_attestation"
    citation_signature = "citation_signature"
    replication_record = "replication_record"


def _json(doc: Any, status: int = 200) -> Response:
    return Response(dumps(doc), status_code=status, media_type="application/json")


def _submit(ctx: AppContext, pith_id: str, action: str, raw: bytes) -> Response:
    clock = Clock.now(ctx.settings.max_clock_skew_seconds)
    event = check_event(parse_event_body(raw), ctx.identity, clock, ACTION_TARGETS[action])
    with ctx.write() as session:
        record = resolve(session, pith_id)
        stored, equivocation = submit_action(
            session,
            ctx.identity,
            record,
            action,
            event,
            margin_seconds=ctx.settings.trust_predate_margin_seconds,
        )
        proofs = log_proofs(session, log_signer_of(ctx), [stored.log_index])
    suffix = record.suffix
    return _json(
        {
            "status": "created" if stored.created else "duplicate",
            "pith_number": record.pith_number,
            "event_id": stored.event["event_id"],
            "log_index": stored.log_index,
            "equivocation": equivocation,
            "event": stored.event,
            "log": event_log_object(proofs, stored.log_index),
            "links": {
                "state_json": f"{ctx.base_url}/pith/{suffix}/state.json",
                "events_json": f"{ctx.base_url}/api/pith-number/{suffix}/events.json",
            },
        },
        201 if stored.created else 200,
    )


@router.post(
    "/pith/{pith_id}/action/{action}",
    summary="Submit one signed event about a record",
    openapi_extra=EVENT_BODY,
    status_code=201,
    responses=CREATED_RESPONSE,
    response_class=Response,
)
async def submit(pith_id: str, action: Action, request: Request) -> Response:
    raw = await request.body()
    return await run_in_threadpool(_submit, context_of(request), pith_id, action.value, raw)


def _ingest(ctx: AppContext, raw: bytes) -> Response:
    doc = parse_event_body(raw)
    events = doc.get("events") if isinstance(doc, dict) else doc
    if not isinstance(events, list) or not events:
        raise Problem(
            422,
            "bad_batch",
            'send a non-empty JSON array of signed events (or {"events": [...]})',
            field="events",
        )
    if len(events) > ctx.settings.max_batch_events:
        raise Problem(
            413,
            "batch_too_large",
            f"at most {ctx.settings.max_batch_events} events a batch; this one has {len(events)}",
            field="events",
        )
    clock = Clock.now(ctx.settings.max_clock_skew_seconds)
    errors = []
    for i, event in enumerate(events):
        try:
            check_event(event, ctx.identity, clock)
        except Problem as p:
            claimed = event.get("event_id") if isinstance(event, dict) else None
            errors.append(
                {
                    "index": i,
                    "event_id": claimed,
                    "reason": p.code,
                    "detail": p.detail,
                    "field": p.field,
                }
            )
    if errors:
        raise Problem(
            422,
            "invalid_events",
            f"{len(errors)} of {len(events)} events are not valid; nothing was stored",
            field=f"events[{errors[0]['index']}]",
            errors=errors[:100],
        )
    with ctx.write() as session:
        stored: list[StoredEvent] = ingest_batch(
            session, events, ctx.settings.trust_predate_margin_seconds, ctx.identity
        )
        proofs = log_proofs(session, log_signer_of(ctx), [s.log_index for s in stored])
    created = sum(1 for s in stored if s.created)
    return _json(
        {
            "accepted": created,
            "duplicates": len(stored) - created,
            "results": [
                {
                    "event_id": s.event["event_id"],
                    "log_index": s.log_index,
                    "status": "created" if s.created else "duplicate",
                    "log": proofs["entries"].get(str(s.log_index)),
                }
                for s in stored
            ],
            "log": {k: proofs[k] for k in ("origin", "tree_size", "checkpoint")},
        },
        201 if created else 200,
    )


@router.post(
    "/api/events",
    summary="Submit a batch of signed events (all stored, or none)",
    openapi_extra=BATCH_BODY,
    status_code=201,
    responses=CREATED_RESPONSE,
    response_class=Response,
)
async def submit_batch(request: Request) -> Response:
    raw = await request.body()
    ctx = context_of(request)
    async with ctx.ingest_gate:  # waits on the event loop, holding no thread
        return await run_in_threadpool(_ingest, ctx, raw)


def _feed(ctx: AppContext, after: int, limit: int) -> Response:
    with ctx.db.read() as session:
        body = views.feed(session, after, limit, ctx.settings.max_listing_bytes)
    return Response(body, media_type="application/json")


@router.get(
    "/api/events",
    summary="The changes feed: every event after a log index, in log order",
    responses=JSON_RESPONSE,
    response_class=Response,
)
async def changes(
    request: Request,
    after: Annotated[str, Query(max_length=64, description="a log index or a `next` cursor")] = "0",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    return await run_in_threadpool(_feed, context_of(request), decode_cursor(after), limit)


async def _serve(request: Request, build: views.Build) -> Response:
    return await context_of(request).serve(request, build)


@router.get(
    "/pith/{pith_id}/state.json",
    summary="The merged state",
    responses=JSON_RESPONSE,
    response_class=Response,
)
async def state(pith_id: str, request: Request) -> Response:
    return await _serve(request, views.state_json(context_of(request), pith_id))


def _settings_tag(request: Request) -> str:
    ctx = context_of(request)
    return listing.settings_tag(ctx.identity.pins_sha256, ctx.settings.max_listing_bytes)


PageBody = Callable[[AppContext, Session, str, listing.PageRequest], bytes]


async def _serve_page(
    request: Request, pith_id: str, asked: listing.PageRequest, body: PageBody
) -> Response:
    """A page of a record's events: the current list through the read cache like any read; a
    page pinned to a tree size (`log_size`, or a cursor) with immutable Cache-Control when
    `pith_id` can name no other record later, else revalidated."""
    ctx = context_of(request)

    def build(session: Session) -> tuple[bytes, str]:
        return body(ctx, session, pith_id, asked), listing.JSON

    if not asked.fixed:
        return await ctx.serve(request, build)
    return await serve_fixed(request, pith_id, build)


LogSize = Annotated[
    int | None,
    Query(
        ge=0,
        le=2**62,
        description="the tree size of the log to answer at (events with leaf index < log_size); "
        "the answer never changes, and is served with immutable Cache-Control",
    ),
]
After = Annotated[
    str | None,
    Query(max_length=96, description="the `next` cursor of the previous page"),
]
PageLimit = Annotated[
    int,
    Query(
        ge=1,
        le=listing.MAX_PAGE_EVENTS,
        description="at most this many events a page (a page also stops at "
        "PITH_MAX_LISTING_BYTES); more than 1000 is a 422",
    ),
]
PAGED = (
    " A record with more events than one page holds (1000, or PITH_MAX_LISTING_BYTES of them) "
    "is answered a page at a time: the answer then has `next` (the cursor of the next page, "
    "passed as `after`; null on the last) and `events_total`. With `log_size=N`, the answer is "
    "the list as the log stood at tree size N, the same bytes forever (400 when N is beyond "
    "the log)."
)


@router.get(
    "/pith/{pith_id}/bundle.json",
    summary="Canonical record and every signed event",
    description="The canonical record, its receipt, the signed events, the state hash and "
    "each event's log inclusion proof." + PAGED,
    responses=JSON_RESPONSE,
    response_class=Response,
)
async def bundle(
    pith_id: str,
    request: Request,
    log_size: LogSize = None,
    after: After = None,
    limit: PageLimit = listing.MAX_PAGE_EVENTS,
) -> Response:
    asked = listing.page_request(log_size, after, limit, _settings_tag(request))
    return await _serve_page(request, pith_id, asked, listing.bundle_body)


@router.get(
    "/.well-known/pith/{pith_id}/bundle.json",
    summary="The bundle, at its well-known URL",
    description="The same document as /pith/{pith_id}/bundle.json." + PAGED,
    responses=JSON_RESPONSE,
    response_class=Response,
)
async def well_known_bundle(
    pith_id: str,
    request: Request,
    log_size: LogSize = None,
    after: After = None,
    limit: PageLimit = listing.MAX_PAGE_EVENTS,
) -> Response:
    return await bundle(pith_id, request, log_size, after, limit)


@router.get(
    "/api/pith-number/{pith_id}/events.json",
    summary="Every signed event about a record",
    description="The signed events in log order, with each one's log inclusion proof." + PAGED,
    responses=JSON_RESPONSE,
    response_class=Response,
)
async def events(
    pith_id: str,
    request: Request,
    log_size: LogSize = None,
    after: After = None,
    limit: PageLimit = listing.MAX_PAGE_EVENTS,
) -> Response:
    asked = listing.page_request(log_size, after, limit, _settings_tag(request))
    return await _serve_page(request, pith_id, asked, listing.events_body)


@router.get(
    "/api/pith-number/{pith_id}/graph.json",
    summary="The latest graph snapshot",
    responses=JSON_RESPONSE,
    response_class=Response,
)
async def graph(pith_id: str, request: Request) -> Response:
    return await _serve(request, views.graph_json(context_of(request), pith_id))
