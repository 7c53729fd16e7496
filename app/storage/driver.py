"""The database driver under a session, for the statements a batch runs on its hot path.

An ORM statement costs ~300 µs of Python in the middle of an ingest (its code is no longer in
the CPU's caches by then), the driver's ~30: a batch's look-ups and inserts (app/events and
app/log repositories) go straight to sqlite3 or psycopg, in the session's transaction. Both take
the same SQL here but for the placeholder, which `sql` writes for the dialect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

_DRIVER = "pith.driver"  # session.info: (the transaction, its Driver)


@dataclass(frozen=True)
class Driver:
    """The DBAPI connection of a session's transaction and how its dialect takes values. A
    repository takes it with `Driver.of` before each use: that is where the session's pending
    ORM writes are flushed."""

    connection: Any
    dialect: Dialect

    @classmethod
    def of(cls, session: Session) -> Driver:
        """The driver connection under `session`'s transaction, its pending ORM writes flushed
        first (the statements sent here must see them). Looked up once a transaction (a batch
        asks about ten times) and kept in `session.info` with the transaction it belongs to."""
        session.flush()
        held = session.info.get(_DRIVER)
        if held is not None and held[0] is session.get_transaction():
            return held[1]
        connection = session.connection().connection.driver_connection  # begins one if none
        assert connection is not None
        driver = cls(connection, session.get_bind().dialect)
        session.info[_DRIVER] = (session.get_transaction(), driver)
        return driver

    @property
    def postgresql(self) -> bool:
        return self.dialect.name == "postgresql"

    def stamper(self) -> Callable[[datetime], Any]:
        """Timezone-aware datetimes as the DateTime columns hold them (SQLite: text)."""
        impl = DateTime(timezone=True).dialect_impl(self.dialect)
        return impl.bind_processor(self.dialect) or _same

    def sql(self, text: str) -> str:
        """`text` with its `?` placeholders as this driver writes them."""
        return text.replace("?", "%s") if self.postgresql else text

    def rows(self, text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self.connection.cursor()
        try:
            cur.execute(self.sql(text), params)
            return list(cur.fetchall())
        finally:
            cur.close()

    def scalar(self, text: str, params: Sequence[Any] = ()) -> Any:
        found = self.rows(text, params)
        return found[0][0] if found else None

    def execute_many(self, text: str, rows: Iterable[Sequence[Any]]) -> None:
        cur = self.connection.cursor()
        try:
            cur.executemany(self.sql(text), rows)
        finally:
            cur.close()


def _same(value: datetime) -> datetime:
    return value


def placeholders(count: int) -> str:
    """`?, ?, …` for an IN list of `count` values."""
    return ", ".join("?" * count)
