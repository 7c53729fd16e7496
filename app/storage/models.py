"""The tables. Events are append-only (the application never updates or deletes a row, and
triggers refuse it); everything else a reader sees is derived from them or from the record."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

LogIndex = BigInteger().with_variant(Integer, "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Record(Base):
    """A paper's canonical record, its receipt and the details people read (title, authors…)."""

    __tablename__ = "records"
    __table_args__ = (UniqueConstraint("source_kind", "source_id", "source_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pith_number: Mapped[str] = mapped_column(String(40), unique=True)
    suffix: Mapped[str] = mapped_column(String(26), unique=True)
    canonical_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    source_kind: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[str] = mapped_column(String(64))
    source_version: Mapped[int] = mapped_column(Integer)
    canonical_record: Mapped[str] = mapped_column(Text)  # canonical JSON
    receipt: Mapped[str] = mapped_column(Text)  # canonical JSON
    receipt_key_fingerprint: Mapped[str] = mapped_column(String(32))
    paper: Mapped[str] = mapped_column(Text)  # JSON: title, authors_text, abstract_excerpt, …
    origin: Mapped[str] = mapped_column(String(16))  # registered | imported
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Alias(Base):
    """A name that resolves to a record; one record per (kind, value)."""

    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("kind", "value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[int] = mapped_column(ForeignKey("records.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SignerKey(Base):
    """Every public key that signed a stored event, as first seen."""

    __tablename__ = "signer_keys"

    fingerprint: Mapped[str] = mapped_column(String(32), primary_key=True)
    public_key_b64: Mapped[str] = mapped_column(String(44))
    key_id: Mapped[str] = mapped_column(String(200))
    signer_id: Mapped[str] = mapped_column(String(200))
    signer_type: Mapped[str] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Event(Base):
    """One signed event, as its canonical JSON text, with the columns queries need."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_subject_log", "subject", "log_index"),
        Index("ix_events_chain", "signer_fingerprint", "subject", "seq"),
        {"sqlite_autoincrement": True},
    )

    log_index: Mapped[int] = mapped_column(LogIndex, Identity(), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(71), unique=True)
    subject: Mapped[str] = mapped_column(ForeignKey("records.pith_number"))
    signer_fingerprint: Mapped[str] = mapped_column(ForeignKey("signer_keys.fingerprint"))
    seq: Mapped[int] = mapped_column(BigInteger)
    prev: Mapped[str | None] = mapped_column(String(71))
    target: Mapped[str] = mapped_column(String(32))
    event_type: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[str] = mapped_column(String(20))  # as signed: YYYY-MM-DDTHH:MM:SSZ
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    body: Mapped[str] = mapped_column(Text)  # the event's canonical JSON


class StateCache(Base):
    """The merged state of a subject as of `through_log_index`, under the pinned keys named by
    `registry_keys_sha256`; stale (and recomputed) when either moved on."""

    __tablename__ = "state_cache"

    subject: Mapped[str] = mapped_column(ForeignKey("records.pith_number"), primary_key=True)
    through_log_index: Mapped[int] = mapped_column(BigInteger)
    registry_keys_sha256: Mapped[str] = mapped_column(String(64))
    state_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(Text)
    computed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RateBucket(Base):
    """A token bucket of one client for one kind of request, shared by every worker process."""

    __tablename__ = "rate_buckets"
    __table_args__ = (Index("ix_rate_buckets_updated", "updated"),)

    bucket: Mapped[str] = mapped_column(String(120), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated: Mapped[float] = mapped_column(Float)  # seconds since the epoch
