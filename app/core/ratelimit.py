"""Write-rate limits every worker process of a deployment shares: token buckets kept in the
database (`rate_buckets`, migration 0003), one row per client, updated under the row's lock.

Per-process buckets let N workers admit N times the limit (4 workers took 590 of 600 writes);
writes touch the database anyway, so one more short unit of work per write costs little. Reads
keep per-process buckets (`guard.TokenBuckets`), each sized to its share of the limit.
"""

from __future__ import annotations

import random
import time
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from ..storage.engine import Database
from ..storage.models import RateBucket

PRUNE_EVERY = 500  # about one take in this many also deletes long-idle buckets


class LimiterUnavailable(Exception):
    """The database that keeps the buckets failed (down, locked, out of connections): the
    write cannot be admitted now, and is answered 503 with Retry-After, not a bare 500."""


class SharedBuckets:
    """`per_minute` requests a minute per client across all processes, bursting up to that."""

    def __init__(self, db: Database, kind: str, per_minute: int, clock: Any = time.time) -> None:
        self.db = db
        self.kind = kind
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock

    def take(self, client: str) -> float:
        """0 when the request may go on; otherwise the seconds until it may; LimiterUnavailable
        when the database cannot say. (Blocking: call from a worker thread.)"""
        try:
            return self._take(client)
        except SQLAlchemyError as e:
            raise LimiterUnavailable(type(e).__name__) from e

    def _take(self, client: str) -> float:
        key = f"{self.kind}:{client}"[:120]
        now = float(self.clock())
        with self.db.write() as session:
            insert = postgresql.insert if self.db.dialect == "postgresql" else sqlite.insert
            session.execute(
                insert(RateBucket)
                .values(bucket=key, tokens=self.capacity, updated=now)
                .on_conflict_do_nothing(index_elements=["bucket"])
            )
            stmt = select(RateBucket.tokens, RateBucket.updated).where(RateBucket.bucket == key)
            if self.db.dialect == "postgresql":
                stmt = stmt.with_for_update()
            tokens, last = session.execute(stmt).one()
            tokens = min(self.capacity, tokens + max(0.0, now - last) * self.rate)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
            if wait == 0.0:
                tokens -= 1.0
            session.execute(
                update(RateBucket)
                .where(RateBucket.bucket == key)
                .values(tokens=tokens, updated=max(now, last))
            )
            if random.randrange(PRUNE_EVERY) == 0:
                # a bucket refills in a minute: one idle for two is full, as good as absent
                session.execute(delete(RateBucket).where(RateBucket.updated < now - 120.0))
        return wait
