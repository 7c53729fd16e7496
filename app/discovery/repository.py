"""Every query of the feed and the sitemap."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..storage.models import Event, Record


class DiscoveryRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def latest_events(self, limit: int, subject: str | None = None) -> list[tuple[Event, Record]]:
        """The newest events in log order (newest first), each with its record."""
        stmt = select(Event, Record).join(Record, Record.pith_number == Event.subject)
        if subject is not None:
            stmt = stmt.where(Event.subject == subject)
        stmt = stmt.order_by(Event.log_index.desc()).limit(limit)
        return [(e, r) for e, r in self.session.execute(stmt)]

    def last_changed(self, limit: int) -> list[tuple[Record, datetime | None]]:
        """Records (newest first) with when their last event was received."""
        last = (
            select(Event.subject, func.max(Event.received_at).label("at"))
            .group_by(Event.subject)
            .subquery()
        )
        stmt = (
            select(Record, last.c.at)
            .outerjoin(last, last.c.subject == Record.pith_number)
            .order_by(Record.id.desc())
            .limit(limit)
        )
        return [(r, at) for r, at in self.session.execute(stmt)]
