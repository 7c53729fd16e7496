"""The tables of replication: registered workers, the job queue (a job's lease lives on its row),
and the nonces of signed worker requests (each used once). Built by migration 0002."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ..storage.models import Base

JOB_STATES = ("queued", "leased", "done")


class Worker(Base):
    """A GPU worker the admin registered: its name and the Ed25519 key its requests verify under."""

    __tablename__ = "workers"

    worker_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    public_key_hex: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Job(Base):
    """One claim to run on one paper. `id` is the queue order; `job_id` the public name.

    queued → leased (lease_id, leased_by, lease_expires_at set) → done (record_event_id set);
    a lease released, or expired without a heartbeat, puts the job back to queued."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint("state IN ('queued', 'leased', 'done')", name="state"),
        Index("ix_jobs_state_id", "state", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(32), unique=True)
    pith_number: Mapped[str] = mapped_column(ForeignKey("records.pith_number"))
    claim_id: Mapped[str] = mapped_column(String(64))
    profile: Mapped[str] = mapped_column(String(64))
    # GPUs its claim profile needs (migration 0006): leased only to a worker with as many
    gpus: Mapped[int] = mapped_column(Integer, server_default="1")
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    leased_by: Mapped[str | None] = mapped_column(ForeignKey("workers.worker_id"))
    lease_id: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    record_event_id: Mapped[str | None] = mapped_column(String(71))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RequestNonce(Base):
    """A nonce a worker's signed request used; a second request with it is a replay."""

    __tablename__ = "request_nonces"
    __table_args__ = (UniqueConstraint("fingerprint", "nonce"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(32))
    nonce: Mapped[str] = mapped_column(String(64))
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
