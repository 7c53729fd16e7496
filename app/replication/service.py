"""Use cases of replication: register workers, queue jobs, authenticate a worker's signed
request, lease / heartbeat / release a job, and take the job's signed record.

A record is stored by `events.service.submit_action`, the path of the public action URL, in the
unit of work that marks its job done: a record is in the log exactly when its job is done.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from pith_core.errors import SignatureError
from pith_core.keys import fingerprint, public_key_from_hex
from pith_core.request_auth import request_signer, verify_request
from replication.claims import CLAIM_MODULES
from replication.claims.registry import CLAIMS

from ..core.problems import Problem
from ..core.timeutil import as_utc, utcnow
from ..events.repository import EventRepository
from ..events.service import StoredEvent, submit_action
from ..records.repository import RecordRepository
from ..records.service import resolve
from ..registry.service import RegistryIdentity
from .models import Job, Worker
from .repository import ReplicationRepository
from .schemas import CreateJob, RegisterWorker

JOB_ID = re.compile(r"job_[0-9a-f]{16}")
# Each payload field a record must share with its job.
JOB_FIELDS = ("job_id", "claim_id", "profile")


@dataclass(frozen=True)
class AuthenticatedWorker:
    worker_id: str
    fingerprint: str


@dataclass(frozen=True)
class Lease:
    lease_id: str
    expires_at: datetime
    ttl_s: int


@dataclass(frozen=True)
class Recorded:
    job: Job
    stored: StoredEvent


def claim_profiles(claim_id: str) -> tuple[str, ...]:
    """The profiles a job for `claim_id` may name, from the claim's spec (torch-free data):
    its current profiles, then legacy ids kept for committed records."""
    return CLAIMS[claim_id].all_profiles


def register_worker(session: Session, body: RegisterWorker) -> tuple[Worker, bool]:
    """Register a worker's key; the same (id, key) again is answered with the stored worker."""
    key = public_key_from_hex(body.public_key_hex)  # the pattern already checked it is hex
    fp = fingerprint(key)
    repo = ReplicationRepository(session)
    existing = repo.worker(body.worker_id)
    if existing is not None:
        if existing.fingerprint == fp:
            return existing, False
        raise Problem(
            409,
            "worker_exists",
            f"worker {body.worker_id!r} is registered with another key "
            f"(fingerprint {existing.fingerprint})",
            field="worker_id",
        )
    holder = repo.worker_by_fingerprint(fp)
    if holder is not None:
        raise Problem(
            409,
            "key_registered",
            f"this key (fingerprint {fp}) is already registered as worker {holder.worker_id!r}",
            field="public_key_hex",
        )
    worker = Worker(
        worker_id=body.worker_id, public_key_hex=key.hex(), fingerprint=fp, created_at=utcnow()
    )
    return repo.add_worker(worker), True


def create_job(session: Session, body: CreateJob) -> Job:
    if body.claim_id not in CLAIM_MODULES:
        raise Problem(
            422,
            "unknown_claim",
            f"no claim {body.claim_id!r}; known: {', '.join(sorted(CLAIM_MODULES))}",
            field="claim_id",
        )
    profiles = claim_profiles(body.claim_id)
    if body.profile not in profiles:
        raise Problem(
            422,
            "unknown_profile",
            f"claim {body.claim_id} has no profile {body.profile!r}; it has {', '.join(profiles)}",
            field="profile",
        )
    record = resolve(session, body.pith)
    now = utcnow()
    job = Job(
        job_id=f"job_{secrets.token_hex(8)}",
        pith_number=record.pith_number,
        claim_id=body.claim_id,
        profile=body.profile,
        gpus=CLAIMS[body.claim_id].gpus_for(body.profile),
        state="queued",
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    return ReplicationRepository(session).add_job(job)


def get_job(session: Session, job_id: str, *, lock: bool = False) -> Job:
    job = (
        ReplicationRepository(session).job(job_id, lock=lock) if JOB_ID.fullmatch(job_id) else None
    )
    if job is None:
        raise Problem(404, "not_found", f"no job {job_id!r} in this registry")
    return job


def _unauthorized(code: str, detail: str) -> Problem:
    return Problem(
        401, code, detail, headers={"WWW-Authenticate": 'Pith-Signature realm="workers"'}
    )


def authenticate(
    session: Session,
    headers: Mapping[str, str],
    method: str,
    path: str,
    body: bytes,
    *,
    max_skew_seconds: int,
) -> AuthenticatedWorker:
    """The registered worker that signed this request, its nonce now used (call in a unit of
    its own, committed whatever the request then does: a refused request is not replayable)."""
    try:
        fp = request_signer(headers)
    except SignatureError as e:
        raise _unauthorized("bad_request_signature", str(e)) from e
    repo = ReplicationRepository(session)
    worker = repo.worker_by_fingerprint(fp)
    if worker is None:
        raise _unauthorized(
            "unknown_worker",
            f"no worker with key fingerprint {fp} is registered here "
            "(the admin registers workers with POST /api/workers)",
        )
    now = utcnow()
    try:
        nonce = verify_request(
            headers,
            method,
            path,
            body,
            bytes.fromhex(worker.public_key_hex),
            now=now,
            max_skew_seconds=max_skew_seconds,
        )
    except SignatureError as e:
        raise _unauthorized("bad_request_signature", str(e)) from e
    repo.forget_nonces(now - timedelta(seconds=2 * max_skew_seconds + 60))
    if not repo.use_nonce(fp, nonce, now):
        raise _unauthorized(
            "replayed_request", "this request's nonce was used before: a request is sent once"
        )
    return AuthenticatedWorker(worker.worker_id, worker.fingerprint)


def lease_next(
    session: Session,
    worker: AuthenticatedWorker,
    claims: Sequence[str],
    *,
    ttl_s: int,
    gpus: int = 1,
) -> tuple[Job, Lease] | None:
    """Lease the oldest queued job for one of `claims` that needs at most `gpus` GPUs (what the
    worker advertises) to `worker` (expired leases go back to the queue first); None when there
    is none. A job needing more GPUs stays queued for a worker that has them."""
    repo = ReplicationRepository(session)
    now = utcnow()
    repo.requeue_expired(now)
    wanted = sorted({c for c in claims if c in CLAIM_MODULES})
    job = repo.next_queued(wanted, max_gpus=gpus) if wanted else None
    if job is None:
        return None
    lease = Lease(secrets.token_urlsafe(18), now + timedelta(seconds=ttl_s), ttl_s)
    job.state = "leased"
    job.leased_by = worker.worker_id
    job.lease_id = lease.lease_id
    job.lease_expires_at = lease.expires_at
    job.attempts += 1
    job.updated_at = now
    session.flush()
    return job, lease


def _check_held(job: Job, worker: AuthenticatedWorker, lease_id: str | None) -> None:
    """409 unless `worker` holds a lease on `job` (lease `lease_id`, or any when None)."""
    job_id = job.job_id
    if job.state == "done":
        raise Problem(
            409,
            "job_done",
            f"job {job_id} is done: its record is {job.record_event_id}",
            record_event_id=job.record_event_id,
        )
    if job.state != "leased" or job.leased_by != worker.worker_id:
        raise Problem(
            409,
            "lease_not_held",
            f"worker {worker.worker_id!r} holds no lease on job {job_id} "
            f"(it is {job.state}{f' by {job.leased_by!r}' if job.leased_by else ''})",
        )
    if lease_id is not None and job.lease_id != lease_id:
        raise Problem(
            409,
            "lease_not_held",
            f"lease {lease_id} of job {job_id} is over (the job was leased again since)",
            field="lease_id",
        )


def _live(job: Job, now: datetime) -> None:
    expires = as_utc(job.lease_expires_at) if job.lease_expires_at else now
    if expires <= now:
        raise Problem(
            409,
            "lease_expired",
            f"the lease on job {job.job_id} expired at {expires.isoformat()} "
            "(no heartbeat in time); the job goes back to the queue",
        )


def heartbeat(
    session: Session, worker: AuthenticatedWorker, job_id: str, lease_id: str, *, ttl_s: int
) -> tuple[Job, Lease]:
    """Renew a live lease for another `ttl_s` seconds."""
    now = utcnow()
    job = get_job(session, job_id, lock=True)
    _check_held(job, worker, lease_id)
    _live(job, now)
    lease = Lease(lease_id, now + timedelta(seconds=ttl_s), ttl_s)
    job.lease_expires_at = lease.expires_at
    job.updated_at = now
    session.flush()
    return job, lease


def release(session: Session, worker: AuthenticatedWorker, job_id: str, lease_id: str) -> Job:
    """Give a job back to the queue (a worker stopping); an expired lease that nobody took over
    yet may still be released."""
    now = utcnow()
    job = get_job(session, job_id, lock=True)
    _check_held(job, worker, lease_id)
    job.state = "queued"
    job.leased_by = None
    job.lease_id = None
    job.lease_expires_at = None
    job.updated_at = now
    session.flush()
    return job


def record(
    session: Session,
    identity: RegistryIdentity,
    worker: AuthenticatedWorker,
    job_id: str,
    event: dict[str, Any],
    margin_seconds: int = 86_400,
) -> Recorded:
    """Take the signed replication record of a job (verified by `events.service.check_event`):
    it must be signed by the worker holding the job's live lease and be about this job. It is
    stored through the action path and the job is done, in this one unit of work."""
    now = utcnow()
    job = get_job(session, job_id, lock=True)
    kept = EventRepository(session).by_event_id(event["event_id"])
    if kept is not None:
        holder = ReplicationRepository(session).job_with_record(event["event_id"])
        raise Problem(
            409,
            "already_recorded",
            f"event {event['event_id']} is already stored (log index {kept.log_index})"
            + (f" as the record of job {holder.job_id}" if holder else ""),
            event_id=event["event_id"],
            job_id=holder.job_id if holder else None,
        )
    _check_held(job, worker, None)
    _live(job, now)
    signer = event["signer"]["public_key_fingerprint"]
    if signer != worker.fingerprint:
        raise Problem(
            403,
            "wrong_signer",
            f"the record is signed by key {signer}, not by the key of worker "
            f"{worker.worker_id!r} ({worker.fingerprint}), which holds this job's lease",
            field="signer.public_key_fingerprint",
        )
    if event["target"] != "replication":
        raise Problem(
            422,
            "wrong_target",
            f"a job's record is a replication_record event, not {event['target']!r}",
            field="target",
        )
    if event["subject_pith_number"] != job.pith_number:
        raise Problem(
            422,
            "wrong_subject",
            f"the record is about {event['subject_pith_number']}; job {job_id} is about "
            f"{job.pith_number}",
            field="subject_pith_number",
        )
    payload = event["payload"]
    for name in JOB_FIELDS:
        expected = getattr(job, name)
        if payload.get(name) != expected:
            raise Problem(
                422,
                "wrong_job",
                f"payload.{name} is {payload.get(name)!r}; job {job_id} has {expected!r}",
                field=f"payload.{name}",
            )
    paper = RecordRepository(session).by_number(job.pith_number)
    assert paper is not None  # jobs reference records, which are never deleted
    stored, _ = submit_action(
        session, identity, paper, "replication_record", event, margin_seconds=margin_seconds
    )
    job.state = "done"
    job.record_event_id = event["event_id"]
    job.lease_id = None
    job.lease_expires_at = None
    job.updated_at = now
    session.flush()
    return Recorded(job, stored)
