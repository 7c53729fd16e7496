"""The schema the migrations build, the append-only log, and the engine's settings."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.records.repository import RecordRepository
from app.storage.driver import Driver
from app.storage.engine import SQLITE_PAGE_SIZE, Database, normalize_url
from app.storage.migrate import alembic_config, current_revision, upgrade_database
from app.storage.models import SignerKey

from .helpers import seed_number


def test_normalize_url_rewrites_plain_postgres_urls() -> None:
    assert normalize_url("postgresql://u:p@h:5/db") == "postgresql+psycopg://u:p@h:5/db"
    assert normalize_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert normalize_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"
    assert normalize_url("sqlite:///./pith.db") == "sqlite:///./pith.db"


def test_in_memory_sqlite_is_refused() -> None:
    with pytest.raises(ValueError, match="in-memory"):
        Database("sqlite://")


def test_migrations_build_every_table_at_head(db_url: str, connection: Connection) -> None:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    assert current_revision(db_url) == head
    tables = set(inspect(connection).get_table_names())
    assert {"records", "aliases", "signer_keys", "events", "state_cache"} <= tables
    uniques = {
        tuple(u["column_names"]) for u in inspect(connection).get_unique_constraints("aliases")
    }
    assert ("kind", "value") in uniques


def test_the_driver_sees_pending_orm_writes_and_is_found_once_a_transaction(
    tmp_path,
) -> None:  # type: ignore[no-untyped-def]
    """`Driver.of` flushes what the session holds before its statements run, answers the same
    connection for the rest of the transaction, and looks again in the next one."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade_database(url)
    db = Database(url)
    count = "SELECT count(*) FROM signer_keys"
    try:
        with pytest.raises(LookupError), db.write() as session:  # rolled back on the way out
            first = Driver.of(session)
            assert Driver.of(session) is first
            session.add(
                SignerKey(
                    fingerprint="f" * 32,
                    public_key_b64="A" * 44,
                    key_id="k",
                    signer_id="s",
                    signer_type="t",
                    first_seen_at=datetime.now(UTC),
                )
            )  # pending: flushed by the next Driver.of
            assert first.scalar(count) == 0
            assert Driver.of(session) is first
            assert first.scalar(count) == 1
            raise LookupError
        with db.write() as session:
            again = Driver.of(session)
            assert again is not first
            assert again.scalar(count) == 0
    finally:
        db.dispose()


def test_sqlite_runs_wal_with_full_sync(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    db.dispose()


def test_a_new_sqlite_database_gets_large_pages_and_an_old_one_keeps_its_own(
    tmp_path,
) -> None:  # type: ignore[no-untyped-def]
    """New files are made with SQLITE_PAGE_SIZE pages (set before the first table: migrations
    connect through the same engine); a database made with SQLite's 4 KiB pages keeps them."""
    new = f"sqlite:///{tmp_path / 'new.db'}"
    upgrade_database(new)
    old_path = tmp_path / "old.db"
    with sqlite3.connect(old_path) as made_elsewhere:  # SQLite's own default, then WAL
        made_elsewhere.execute("PRAGMA page_size = 4096")
        made_elsewhere.execute("PRAGMA journal_mode = WAL")
        made_elsewhere.execute("CREATE TABLE before_pith (a INTEGER)")
    made_elsewhere.close()
    upgrade_database(f"sqlite:///{old_path}")
    for url, pages in ((new, SQLITE_PAGE_SIZE), (f"sqlite:///{old_path}", 4096)):
        db = Database(url)
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA page_size").scalar() == pages, url
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
            assert "events" in inspect(conn).get_table_names()
        db.dispose()
    assert SQLITE_PAGE_SIZE != 4096  # (else this test could not tell the two apart)


def _event_count(connection: Connection) -> int:
    return int(connection.execute(text("SELECT count(*) FROM events")).scalar() or 0)


@pytest.mark.parametrize("statement", ["UPDATE events SET seq = seq + 1", "DELETE FROM events"])
def test_the_database_refuses_to_rewrite_events(
    seeded, connection: Connection, statement: str
) -> None:  # type: ignore[no-untyped-def]
    before = _event_count(connection)
    assert before == 10  # five seeds, a record and a graph event each
    savepoint = connection.begin_nested()
    with pytest.raises(DBAPIError, match="append-only"):
        connection.execute(text(statement))
    savepoint.rollback()
    assert _event_count(connection) == before


def test_log_indices_increase_in_insertion_order(seeded, connection: Connection) -> None:  # type: ignore[no-untyped-def]
    rows = connection.execute(
        text("SELECT log_index, subject, target FROM events ORDER BY log_index")
    ).all()
    indices = [r[0] for r in rows]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    # each seed's record event precedes its graph event, and seeds come in file order
    assert [r[2] for r in rows] == ["record", "graph"] * 5
    assert rows[0][1] == seed_number("000")


def test_an_alias_names_one_record(seeded, database: Database) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IntegrityError), database.write() as session:
        repo = RecordRepository(session)
        other = repo.by_number(seed_number("004"))
        assert other is not None
        repo.add_alias(other.id, "arxiv", "2606.22932", datetime.now(UTC))
    with database.read() as session:
        record = RecordRepository(session).by_alias("arxiv", "2606.22932")
        assert record is not None and record.pith_number == seed_number("000")


def test_downgrade_and_upgrade_round_trip(fresh_databases) -> None:  # type: ignore[no-untyped-def]
    from alembic import command

    url = fresh_databases.new("sqlite")
    command.downgrade(alembic_config(url), "base")
    assert current_revision(url) is None
    command.upgrade(alembic_config(url), "head")
    assert current_revision(url) is not None


def test_pith_db_upgrade_works_from_any_directory(fresh_databases, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys
    from pathlib import Path

    url = fresh_databases.new("sqlite", migrate=False)
    pith = Path(sys.executable).parent / "pith"
    out = subprocess.run(
        [str(pith), "db", "upgrade", "--database-url", url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert current_revision(url) is not None and "revision" in out.stdout
