"""Every query on workers, jobs and request nonces.

Leasing is atomic under concurrency: on PostgreSQL each candidate row is taken with
`FOR UPDATE SKIP LOCKED`, so two lease calls never take the same job and never wait on each
other; on SQLite, write units begin with `BEGIN IMMEDIATE`, which serialises them whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from .models import Job, RequestNonce, Worker


class ReplicationRepository:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.dialect = session.get_bind().dialect.name

    # workers

    def worker(self, worker_id: str) -> Worker | None:
        return self.session.get(Worker, worker_id)

    def worker_by_fingerprint(self, fingerprint: str) -> Worker | None:
        stmt = select(Worker).where(Worker.fingerprint == fingerprint)
        return self.session.scalars(stmt).first()

    def workers(self) -> Sequence[Worker]:
        return self.session.scalars(select(Worker).order_by(Worker.created_at)).all()

    def add_worker(self, worker: Worker) -> Worker:
        self.session.add(worker)
        self.session.flush()
        return worker

    # jobs

    def job(self, job_id: str, *, lock: bool = False) -> Job | None:
        stmt = select(Job).where(Job.job_id == job_id)
        if lock:
            stmt = stmt.with_for_update()
        return self.session.scalars(stmt).first()

    def job_with_record(self, event_id: str) -> Job | None:
        return self.session.scalars(select(Job).where(Job.record_event_id == event_id)).first()

    def jobs(
        self,
        *,
        state: str | None = None,
        claim_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Sequence[Job]:
        stmt = select(Job)
        if state is not None:
            stmt = stmt.where(Job.state == state)
        if claim_id is not None:
            stmt = stmt.where(Job.claim_id == claim_id)
        return self.session.scalars(stmt.order_by(Job.id).limit(limit).offset(offset)).all()

    def add_job(self, job: Job) -> Job:
        self.session.add(job)
        self.session.flush()
        return job

    def requeue_expired(self, now: datetime) -> None:
        """Put every job whose lease ran out back in the queue (rows another unit is changing
        right now are skipped: it holds them, and they are not ours to decide)."""
        expired = (
            select(Job.id)
            .where(Job.state == "leased", Job.lease_expires_at < now)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            update(Job)
            .where(Job.id.in_(expired.scalar_subquery()))
            .values(
                state="queued", leased_by=None, lease_id=None, lease_expires_at=None, updated_at=now
            )
            .execution_options(synchronize_session=False)
        )
        self.session.execute(stmt)

    def next_queued(self, claims: Sequence[str], *, max_gpus: int = 1) -> Job | None:
        """The oldest queued job for one of `claims` needing at most `max_gpus` GPUs, locked for
        this unit (locked ones skipped)."""
        stmt = (
            select(Job)
            .where(Job.state == "queued", Job.claim_id.in_(list(claims)), Job.gpus <= max_gpus)
            .order_by(Job.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        return self.session.scalars(stmt).first()

    def count_jobs(self, state: str | None = None) -> int:
        stmt = select(func.count()).select_from(Job)
        if state is not None:
            stmt = stmt.where(Job.state == state)
        return int(self.session.scalar(stmt) or 0)

    # nonces

    def use_nonce(self, fingerprint: str, nonce: str, seen_at: datetime) -> bool:
        """Record that `fingerprint` used `nonce`; False when it had used it before (a replay)."""
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = (
            dialect_insert(RequestNonce)
            .values(fingerprint=fingerprint, nonce=nonce, seen_at=seen_at)
            .on_conflict_do_nothing(index_elements=["fingerprint", "nonce"])
            .returning(RequestNonce.id)
        )
        return self.session.execute(stmt).first() is not None

    def forget_nonces(self, before: datetime) -> None:
        """Drop nonces seen before `before`: a request that old fails the clock check anyway."""
        old = (
            select(RequestNonce.id)
            .where(RequestNonce.seen_at < before)
            .limit(1000)
            .with_for_update(skip_locked=True)
        )
        stmt = delete(RequestNonce).where(RequestNonce.id.in_(old.scalar_subquery()))
        self.session.execute(stmt.execution_options(synchronize_session=False))
