"""Every query on the event log, signer keys and the state cache."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..storage.driver import Driver, placeholders
from ..storage.models import Event, StateCache

# Writers append under one lock, so log indices become visible in increasing order and a
# changes-feed reader that saw index n never later finds a smaller one committed behind it.
# (SQLite's BEGIN IMMEDIATE is that lock already.)
LOG_LOCK_KEY = 0x70697468  # "pith"
_LOCKED = "pith.log_locked"  # session.info: this transaction holds the log lock
_CHUNK = 500
_EXISTING_IDS = "SELECT event_id FROM events WHERE event_id IN ({})"
_EXISTING_IDS_POSTGRESQL = "SELECT event_id FROM events WHERE event_id = ANY(%s::varchar[])"
_ADD_SIGNER = (
    "INSERT INTO signer_keys "
    "(fingerprint, public_key_b64, key_id, signer_id, signer_type, first_seen_at) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (fingerprint) DO NOTHING"
)


def _displayable(text: str, limit: int) -> str:
    """A signer's name as a column can hold it (the signed event keeps it exactly)."""
    return text[:limit].replace("\x00", "\ufffd")


class EventRepository:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.dialect = session.get_bind().dialect.name

    def lock_log(self) -> None:
        if self.dialect == "postgresql" and not self.session.info.get(_LOCKED):
            Driver.of(self.session).rows(f"SELECT pg_advisory_xact_lock({LOG_LOCK_KEY})")
            self.session.info[_LOCKED] = True  # held to the end of this transaction

    def head(self) -> int:
        """The highest log index (0 when the log is empty)."""
        return int(Driver.of(self.session).scalar("SELECT max(log_index) FROM events") or 0)

    def subject_head(self, subject: str) -> int:
        stmt = select(func.max(Event.log_index)).where(Event.subject == subject)
        return int(self.session.scalar(stmt) or 0)

    def by_event_id(self, event_id: str) -> Event | None:
        return self.session.scalars(select(Event).where(Event.event_id == event_id)).first()

    def existing_ids(self, event_ids: Iterable[str]) -> set[str]:
        """Those of `event_ids` the log holds: a batch's look-up, by the driver (one array
        parameter on PostgreSQL, an IN list of up to 500 on SQLite: a search of the unique
        index each)."""
        wanted = sorted(set(event_ids))
        driver = Driver.of(self.session)
        found: set[str] = set()
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            if driver.postgresql:
                rows = driver.rows(_EXISTING_IDS_POSTGRESQL, (chunk,))
            else:
                rows = driver.rows(_EXISTING_IDS.format(placeholders(len(chunk))), chunk)
            found.update(str(event_id) for (event_id,) in rows)
        return found

    def bodies_for(self, subject: str) -> Sequence[str]:
        stmt = select(Event.body).where(Event.subject == subject).order_by(Event.log_index)
        return self.session.scalars(stmt).all()

    def for_subject(self, subject: str) -> Sequence[Event]:
        stmt = select(Event).where(Event.subject == subject).order_by(Event.log_index)
        return self.session.scalars(stmt).all()

    def count_between(self, subject: str, after: int, upto: int) -> int:
        stmt = select(func.count()).where(
            Event.subject == subject, Event.log_index > after, Event.log_index <= upto
        )
        return int(self.session.scalar(stmt) or 0)

    def bodies_between(self, subject: str, after: int, upto: int) -> Sequence[str]:
        """Bodies of a subject's events with `after` < log index <= `upto`, in log order."""
        stmt = (
            select(Event.body)
            .where(Event.subject == subject, Event.log_index > after, Event.log_index <= upto)
            .order_by(Event.log_index)
        )
        return self.session.scalars(stmt).all()

    def slot_holder(
        self, signer_fingerprint: str, subject: str, seq: int, through: int
    ) -> str | None:
        """The first-logged event of this signer at (subject, seq) up to log index `through`."""
        stmt = (
            select(Event.event_id)
            .where(
                Event.signer_fingerprint == signer_fingerprint,
                Event.subject == subject,
                Event.seq == seq,
                Event.log_index <= through,
            )
            .order_by(Event.log_index)
            .limit(1)
        )
        found = self.session.scalar(stmt)
        return str(found) if found is not None else None

    def slot_taken(self, signer_fingerprint: str, subject: str, seq: int, event_id: str) -> bool:
        """Whether another event of this signer holds (subject, seq): an equivocation."""
        stmt = (
            select(Event.log_index)
            .where(
                Event.signer_fingerprint == signer_fingerprint,
                Event.subject == subject,
                Event.seq == seq,
                Event.event_id != event_id,
            )
            .limit(1)
        )
        return self.session.execute(stmt).first() is not None

    def chain_tip(self, signer_fingerprint: str, subject: str) -> tuple[int, str] | None:
        """(seq, event_id) of the signer's highest-seq event about `subject`."""
        stmt = (
            select(Event.seq, Event.event_id)
            .where(Event.signer_fingerprint == signer_fingerprint, Event.subject == subject)
            .order_by(Event.seq.desc(), Event.log_index.desc())
            .limit(1)
        )
        row = self.session.execute(stmt).first()
        return (int(row[0]), str(row[1])) if row else None

    def after(self, log_index: int, limit: int) -> Sequence[tuple[int, str]]:
        """(log_index, body) of the events after `log_index`, in log order."""
        stmt = (
            select(Event.log_index, Event.body)
            .where(Event.log_index > log_index)
            .order_by(Event.log_index)
            .limit(limit)
        )
        return [(int(i), str(b)) for i, b in self.session.execute(stmt)]

    def last_received(self, subject: str) -> datetime | None:
        stmt = select(func.max(Event.received_at)).where(Event.subject == subject)
        return self.session.scalar(stmt)

    def add_signers(self, signers: Iterable[dict[str, Any]], seen_at: datetime) -> None:
        """Record each signer key not yet known (first sighting wins), by the driver."""
        rows = {}
        for s in signers:
            fingerprint = s["public_key_fingerprint"]
            if fingerprint in rows:  # a batch is mostly one signer's: one row each
                continue
            rows[fingerprint] = (
                fingerprint,
                s["public_key_b64"],
                _displayable(s["key_id"], 200),
                _displayable(s["signer_id"], 200),
                _displayable(s["signer_type"], 64),
            )
        if not rows:
            return
        driver = Driver.of(self.session)
        stamp = driver.stamper()(seen_at)
        driver.execute_many(_ADD_SIGNER, [(*row, stamp) for row in rows.values()])

    def cached_state(self, subject: str) -> StateCache | None:
        return self.session.get(StateCache, subject)

    def state_mark(self, subject: str) -> tuple[int, str, str] | None:
        """(through_log_index, registry_keys_sha256, state_sha256) of the saved state, without
        its text (a large state's text is megabytes: read it only when it is needed)."""
        stmt = select(
            StateCache.through_log_index,
            StateCache.registry_keys_sha256,
            StateCache.state_sha256,
        ).where(StateCache.subject == subject)
        row = self.session.execute(stmt).first()
        return (int(row[0]), str(row[1]), str(row[2])) if row else None

    def saved_state(self, subject: str) -> tuple[int, str, str] | None:
        """(through_log_index, registry_keys_sha256, state text) of the saved state."""
        stmt = select(
            StateCache.through_log_index, StateCache.registry_keys_sha256, StateCache.state
        ).where(StateCache.subject == subject)
        row = self.session.execute(stmt).first()
        return (int(row[0]), str(row[1]), str(row[2])) if row else None

    def save_state(
        self,
        subject: str,
        through_log_index: int,
        pins_sha256: str,
        state_sha256: str,
        state_text: str,
        computed_at: datetime,
    ) -> None:
        values = {
            "subject": subject,
            "through_log_index": through_log_index,
            "registry_keys_sha256": pins_sha256,
            "state_sha256": state_sha256,
            "state": state_text,
            "computed_at": computed_at,
        }
        dialect_insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = dialect_insert(StateCache).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["subject"],
            set_={k: stmt.excluded[k] for k in values if k != "subject"},
            # never back: a slower rebuild that started earlier must not undo a newer one
            where=(StateCache.through_log_index < stmt.excluded.through_log_index)
            | (StateCache.registry_keys_sha256 != stmt.excluded.registry_keys_sha256),
        )
        self.session.execute(stmt)
