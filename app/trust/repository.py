"""Every query the trust policy needs: which replication records came from a job."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..replication.models import Job


class TrustRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def job_records(self, pith_number: str) -> set[str]:
        """Event ids of the stored records of registered workers' jobs about `pith_number` (one
        indexed query: jobs are few, a paper's self-reported records may be many)."""
        stmt = select(Job.record_event_id).where(
            Job.pith_number == pith_number, Job.record_event_id.is_not(None)
        )
        return {str(i) for i in self.session.scalars(stmt)}
