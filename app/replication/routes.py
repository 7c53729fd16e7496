"""HTTP routes of replication: the admin's workers and jobs, and the worker's signed calls
(lease, heartbeat, release, record) exactly as `replication/client.py` makes them."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from ..core.context import AppContext, context_of
from ..core.openapi import CREATED_RESPONSE, JSON_RESPONSE
from ..core.problems import Problem
from ..events.service import Clock, check_event, parse_event_body
from ..events.state import refresh
from ..events.views import dumps
from ..registry.dependencies import require_admin
from ..registry.service import check_admin
from . import service
from .repository import ReplicationRepository
from .schemas import (
    LEASE_BODY,
    LEASE_REF_BODY,
    RECORD_BODY,
    CreateJob,
    LeaseRef,
    LeaseRequest,
    RegisterWorker,
)
from .service import AuthenticatedWorker
from .views import job_document, lease_document, worker_document

router = APIRouter(tags=["replication"])
Model = TypeVar("Model", bound=BaseModel)
LEASE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **JSON_RESPONSE,
    204: {"description": "no queued job for these claims"},
}


class JobState(StrEnum):
    queued = "queued"
    leased = "leased"
    done = "done"


def _json(doc: Any, status: int = 200) -> Response:
    return Response(dumps(doc), status_code=status, media_type="application/json")


# Admin: workers and jobs


@router.post(
    "/api/workers",
    summary="Register a GPU worker's public key (admin)",
    dependencies=[Depends(require_admin)],
    status_code=201,
    responses=CREATED_RESPONSE,
    response_class=Response,
)
def register_worker(
    body: RegisterWorker,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    ctx = context_of(request)
    check_admin(ctx.settings, authorization)
    with ctx.db.write() as session:
        worker, created = service.register_worker(session, body)
        doc = worker_document(worker)
    return _json(doc, 201 if created else 200)


@router.get(
    "/api/workers", summary="Registered workers", responses=JSON_RESPONSE, response_class=Response
)
def list_workers(request: Request) -> Response:
    ctx = context_of(request)
    with ctx.db.read() as session:
        workers = [worker_document(w) for w in ReplicationRepository(session).workers()]
    return _json({"workers": workers, "count": len(workers)})


@router.post(
    "/api/jobs",
    summary="Queue a replication job: a claim and profile to run on a paper (admin)",
    dependencies=[Depends(require_admin)],
    status_code=201,
    responses=CREATED_RESPONSE,
    response_class=Response,
)
def create_job(
    body: CreateJob,
    request: Request,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    ctx = context_of(request)
    check_admin(ctx.settings, authorization)
    with ctx.db.write() as session:
        doc = job_document(service.create_job(session, body), ctx.base_url)
    return _json(doc, 201)


@router.get(
    "/api/jobs",
    summary="Replication jobs, oldest first",
    responses=JSON_RESPONSE,
    response_class=Response,
)
def list_jobs(
    request: Request,
    state: JobState | None = None,
    claim_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    ctx = context_of(request)
    with ctx.db.read() as session:
        repo = ReplicationRepository(session)
        jobs = repo.jobs(
            state=state.value if state else None, claim_id=claim_id, limit=limit, offset=offset
        )
        docs = [job_document(j, ctx.base_url) for j in jobs]
        total = repo.count_jobs(state.value if state else None)
    return _json({"jobs": docs, "count": len(docs), "total": total})


@router.get(
    "/api/jobs/{job_id}",
    summary="One replication job",
    responses=JSON_RESPONSE,
    response_class=Response,
)
def get_job(job_id: str, request: Request) -> Response:
    ctx = context_of(request)
    with ctx.db.read() as session:
        doc = job_document(service.get_job(session, job_id), ctx.base_url)
    return _json(doc)


# Worker: every call signed with the worker's registered key (pith_core.request_auth)


def _validated(model: type[Model], raw: bytes) -> Model:
    try:
        return model.model_validate(parse_event_body(raw))
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or None
        raise Problem(
            422, "validation_error", f"{field or 'body'}: {first['msg']}", field=field
        ) from e


def _authenticated(ctx: AppContext, headers: Headers, path: str, raw: bytes) -> AuthenticatedWorker:
    """The signing worker, its nonce committed in a unit of its own before the call goes on."""
    with ctx.db.write() as session:
        return service.authenticate(
            session,
            headers,
            "POST",
            path,
            raw,
            max_skew_seconds=ctx.settings.max_clock_skew_seconds,
        )


async def _worker_call(
    request: Request, act: Callable[[AppContext, AuthenticatedWorker, bytes], Response]
) -> Response:
    ctx = context_of(request)
    raw = await request.body()

    def run() -> Response:
        worker = _authenticated(ctx, request.headers, request.url.path, raw)
        return act(ctx, worker, raw)

    return await run_in_threadpool(run)


@router.post(
    "/api/jobs/lease",
    summary="Lease the next queued job for one of the worker's claims (signed by the worker)",
    openapi_extra=LEASE_BODY,
    responses=LEASE_RESPONSES,
    response_class=Response,
)
async def lease(request: Request) -> Response:
    def act(ctx: AppContext, worker: AuthenticatedWorker, raw: bytes) -> Response:
        body = _validated(LeaseRequest, raw)
        ttl = ctx.settings.lease_ttl_seconds
        with ctx.db.write() as session:
            leased = service.lease_next(session, worker, body.claims, ttl_s=ttl, gpus=body.gpus)
            if leased is None:
                return Response(status_code=204)
            job, granted = leased
            doc = {"job": job_document(job, ctx.base_url), "lease": lease_document(granted)}
        return _json(doc)

    return await _worker_call(request, act)


@router.post(
    "/api/jobs/{job_id}/heartbeat",
    summary="Renew the lease on a job (signed by the worker holding it)",
    openapi_extra=LEASE_REF_BODY,
    responses=JSON_RESPONSE,
    response_class=Response,
)
async def heartbeat(job_id: str, request: Request) -> Response:
    def act(ctx: AppContext, worker: AuthenticatedWorker, raw: bytes) -> Response:
        ref = _validated(LeaseRef, raw)
        ttl = ctx.settings.lease_ttl_seconds
        with ctx.db.write() as session:
            job, renewed = service.heartbeat(session, worker, job_id, ref.lease_id, ttl_s=ttl)
            doc = {"lease": lease_document(renewed), "job": job_document(job, ctx.base_url)}
        return _json(doc)

    return await _worker_call(request, act)


@router.post(
    "/api/jobs/{job_id}/release",
    summary="Give a leased job back to the queue (signed by the worker holding it)",
    openapi_extra=LEASE_REF_BODY,
    responses=JSON_RESPONSE,
    response_class=Response,
)
async def release(job_id: str, request: Request) -> Response:
    def act(ctx: AppContext, worker: AuthenticatedWorker, raw: bytes) -> Response:
        ref = _validated(LeaseRef, raw)
        with ctx.db.write() as session:
            job = service.release(session, worker, job_id, ref.lease_id)
            doc = {"job": job_document(job, ctx.base_url)}
        return _json(doc)

    return await _worker_call(request, act)


@router.post(
    "/api/jobs/{job_id}/record",
    summary="Submit the job's signed replication_record event; the job is then done",
    openapi_extra=RECORD_BODY,
    status_code=201,
    responses=CREATED_RESPONSE,
    response_class=Response,
)
async def submit_record(job_id: str, request: Request) -> Response:
    def act(ctx: AppContext, worker: AuthenticatedWorker, raw: bytes) -> Response:
        clock = Clock.now(ctx.settings.max_clock_skew_seconds)
        event = check_event(parse_event_body(raw), ctx.identity, clock, "replication")
        with ctx.write() as session:
            done = service.record(
                session,
                ctx.identity,
                worker,
                job_id,
                event,
                margin_seconds=ctx.settings.trust_predate_margin_seconds,
            )
            doc = {
                "event_id": done.stored.event["event_id"],
                "log_index": done.stored.log_index,
                "job": job_document(done.job, ctx.base_url),
            }
        # after the commit, outside the log lock: the paper's state with this record
        state = refresh(ctx.db, ctx.identity, event["subject_pith_number"])
        return _json({**doc, "state_sha256": state["state_sha256"]}, 201)

    return await _worker_call(request, act)
