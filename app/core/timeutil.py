"""Time helpers for stored timestamps (SQLite hands back naive datetimes: they are UTC)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def iso(moment: datetime) -> str:
    """`2026-06-23T03:14:04.622776+00:00`, the public registry's record timestamps."""
    return as_utc(moment).isoformat()
