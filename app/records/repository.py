"""Every query on records and aliases."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..storage.driver import Driver, placeholders
from ..storage.models import Alias, Record

_SUBMITTED_AT = (
    "SELECT pith_number, json_extract(canonical_record, '$.metadata.submitted_at') "
    "FROM records WHERE pith_number IN ({})"
)
_SUBMITTED_AT_POSTGRESQL = (
    "SELECT pith_number, canonical_record::json #>> '{metadata,submitted_at}' "
    "FROM records WHERE pith_number = ANY(%s::varchar[])"
)


def _could_be_alias(value: str) -> bool:
    """Aliases are short printable ASCII (arXiv ids, DOIs, base32); PostgreSQL text cannot even
    hold some strings a URL can carry (NUL), so those are answered without a query."""
    return len(value) <= 200 and value.isascii() and value.isprintable()


class RecordRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def by_number(self, pith_number: str) -> Record | None:
        return self.session.scalars(select(Record).where(Record.pith_number == pith_number)).first()

    def by_suffix_prefix(self, prefix: str, limit: int = 2) -> Sequence[Record]:
        """Records whose suffix starts with `prefix` (base32: no LIKE wildcards can occur)."""
        stmt = select(Record).where(Record.suffix.like(prefix + "%")).order_by(Record.suffix)
        return self.session.scalars(stmt.limit(limit)).all()

    def by_source(self, kind: str, source_id: str, version: int) -> Record | None:
        stmt = select(Record).where(
            Record.source_kind == kind,
            Record.source_id == source_id,
            Record.source_version == version,
        )
        return self.session.scalars(stmt).first()

    def by_alias(self, kind: str, value: str) -> Record | None:
        if not _could_be_alias(value):
            return None
        stmt = (
            select(Record)
            .join(Alias, Alias.record_id == Record.id)
            .where(Alias.kind == kind, Alias.value == value)
        )
        return self.session.scalars(stmt).first()

    def existing_numbers(self, numbers: Iterable[str]) -> set[str]:
        wanted = sorted(set(numbers))
        if not wanted:
            return set()
        stmt = select(Record.pith_number).where(Record.pith_number.in_(wanted))
        return set(self.session.scalars(stmt))

    def submitted_at_of(self, numbers: Iterable[str]) -> dict[str, str]:
        """pith_number -> its canonical record's `submitted_at`, for the records that exist.
        Read inside the database (a record is kilobytes of JSON; a batch needs one field), by
        the driver: every batch asks."""
        wanted = sorted(set(numbers))
        if not wanted:
            return {}
        driver = Driver.of(self.session)
        if driver.postgresql:
            rows = driver.rows(_SUBMITTED_AT_POSTGRESQL, (wanted,))
        else:
            rows = driver.rows(_SUBMITTED_AT.format(placeholders(len(wanted))), wanted)
        return {str(n): str(at) for n, at in rows}

    def count(self) -> int:
        return int(self.session.scalar(select(func.count()).select_from(Record)) or 0)

    def page(self, limit: int, offset: int = 0) -> Sequence[Record]:
        stmt = select(Record).order_by(Record.id.desc()).limit(limit).offset(offset)
        return self.session.scalars(stmt).all()

    def add(self, record: Record) -> Record:
        self.session.add(record)
        self.session.flush()
        return record

    def aliases_of(self, record_id: int) -> Sequence[Alias]:
        stmt = select(Alias).where(Alias.record_id == record_id).order_by(Alias.kind, Alias.value)
        return self.session.scalars(stmt).all()

    def alias(self, kind: str, value: str) -> Alias | None:
        stmt = select(Alias).where(Alias.kind == kind, Alias.value == value)
        return self.session.scalars(stmt).first()

    def add_alias(self, record_id: int, kind: str, value: str, created_at: datetime) -> None:
        self.session.add(Alias(record_id=record_id, kind=kind, value=value, created_at=created_at))
        self.session.flush()

    def point_alias(self, alias_id: int, record_id: int) -> None:
        """Move a version-less alias (arxiv id, DOI) to a newer version's record."""
        self.session.execute(update(Alias).where(Alias.id == alias_id).values(record_id=record_id))
