"""Every query the trust policy needs: which replication records came from a job."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..replication.models import Job


class TrustRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def job_records(self, event_ids: Iterable[str]) -> set[str]:
        """The ids among `event_ids` that are the stored record of a registered worker's job."""
        wanted = sorted(set(event_ids))
        found: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            stmt = select(Job.record_event_id).where(Job.record_event_id.in_(chunk))
            found.update(str(i) for i in self.session.scalars(stmt) if i)
        return found
