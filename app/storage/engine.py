"""Engines and units of work.

SQLite runs in WAL mode with `synchronous=FULL` (an acknowledged commit survives a crash),
16 KiB pages (a new file), foreign keys on and a busy timeout; write units begin with
`BEGIN IMMEDIATE`, so two writers queue instead of failing when one upgrades a read lock.
PostgreSQL goes through psycopg 3.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 10_000
# 16 KiB pages: a batch's commit writes a quarter as many WAL frames for the rows it appends
# (bench: ingest ~3.5% less CPU than at SQLite's 4 KiB, measured side by side; 32 KiB no better).
SQLITE_PAGE_SIZE = 16_384
WRITE_OPTION = "pith_write"


def normalize_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean psycopg 3 here; anything else is kept."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's BEGIN below drive transactions instead of the driver's implicit ones.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # Taken by a new, empty file only (before its first table and WAL); an existing
        # database keeps the page size it was made with.
        cur.execute(f"PRAGMA page_size = {SQLITE_PAGE_SIZE}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = FULL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    if is_sqlite(url):
        if make_url(url).database in (None, "", ":memory:"):
            raise ValueError("an in-memory SQLite database cannot be shared; give a file path")
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **kwargs,
        )
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    # Custom plans always: psycopg prepares a statement after a few runs, and on a young database
    # PostgreSQL's generic plan for `event_id = ANY(:ids)` is a sequential scan that it then
    # keeps, turning batch ingest quadratic until someone runs ANALYZE.
    connect_args = dict(kwargs.pop("connect_args", {}))
    connect_args.setdefault("options", "-c plan_cache_mode=force_custom_plan")
    return create_engine(url, connect_args=connect_args, **kwargs)


class Database:
    """An engine and its units of work: `read()` and `write()` are each one transaction."""

    def __init__(self, url: str, *, engine: Engine | None = None, bind: Any = None) -> None:
        self.url = normalize_url(url)
        self.engine = engine if engine is not None else make_engine(self.url)
        self.dialect = self.engine.dialect.name
        self._writer_queue: AbstractContextManager[Any] = (
            threading.RLock() if self.dialect == "sqlite" else nullcontext()
        )
        target = bind if bind is not None else self.engine
        write_target = target.execution_options(**{WRITE_OPTION: True}) if bind is None else target
        # Bound to an outer connection (tests), each unit of work is a SAVEPOINT inside it.
        mode = "create_savepoint" if bind is not None else "conditional_savepoint"
        self._read = sessionmaker(bind=target, expire_on_commit=False, join_transaction_mode=mode)
        self._write = sessionmaker(
            bind=write_target, expire_on_commit=False, join_transaction_mode=mode
        )

    @classmethod
    def bound_to(cls, connection: Connection) -> Database:
        """Units of work that run inside `connection`'s open transaction (rolled back by tests)."""
        url = connection.engine.url.render_as_string(hide_password=False)
        return cls(url, engine=connection.engine, bind=connection)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: committed when the block ends, rolled back if it raises.

        On SQLite the writers of this process queue on a lock first (one writer at a time is
        all SQLite allows): they wait in turn instead of polling the busy handler, which is
        unfair and lets an unlucky writer time out. Other processes still meet the busy
        timeout."""
        with self._writer_queue, self._write() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
