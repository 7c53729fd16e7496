"""app/log's bulk paths (issue 14's ingest figure): a batch's rows go to the database by the
driver (COPY on PostgreSQL, executemany on SQLite), and must store what SQLAlchemy's own insert
stores; the tree's node look-ups must search the primary key, not scan the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from app.log.models import LogNode
from app.log.repository import COPY_THRESHOLD, LogRepository
from app.storage.models import Event
from tests.app.helpers import new_key, seed_number, signed_event


def test_a_bulk_batch_stores_rows_as_a_single_submission_does(
    seeded: TestClient, connection: Connection
) -> None:
    subject = seed_number("004")
    suffix = subject.rsplit(":", 1)[1]
    key = new_key()
    single = signed_event(key, subject, seq=1)
    r = seeded.post(f"/pith/{suffix}/action/replication_record", json=single)
    assert r.status_code == 201, r.text
    batch, prev = [], single["event_id"]
    for seq in range(2, COPY_THRESHOLD + 6):  # past the threshold: the driver's bulk path
        batch.append(signed_event(key, subject, seq=seq, prev=prev))
        prev = batch[-1]["event_id"]
    r = seeded.post("/api/events", json=batch)
    assert r.status_code == 201 and r.json()["accepted"] == len(batch), r.text
    answered = {x["event_id"]: x["log_index"] for x in r.json()["results"]}

    with Session(connection) as session:
        rows = {
            e.event_id: e
            for e in session.scalars(
                select(Event).where(Event.event_id.in_([single["event_id"], *answered]))
            )
        }
        stored_text = session.execute(
            select(Event.event_id, text("CAST(received_at AS TEXT)")).where(
                Event.event_id.in_(list(rows))
            )
        ).all()
    assert {e: rows[e].log_index for e in answered} == answered
    now = datetime.now(UTC)
    for event_id, row in rows.items():
        received = row.received_at
        if received.tzinfo is None:  # SQLite keeps no zone: both paths store UTC
            received = received.replace(tzinfo=UTC)
        assert abs(now - received) < timedelta(minutes=5), event_id
    if connection.dialect.name == "sqlite":  # no datetime type: the text is what is kept
        # the driver's rows carry the very text SQLAlchemy's insert writes (one format)
        shapes = {(len(v), v[4], v[10], v[-7]) for _, v in stored_text}
        assert len(shapes) == 1, stored_text


def test_node_look_ups_search_the_primary_key(connection: Connection) -> None:
    if connection.dialect.name != "sqlite":
        pytest.skip("SQLite's planner only (PostgreSQL turns the row IN into index scans)")
    with Session(connection) as session:
        repo = LogRepository(session)
        ids = [(0, 3), (0, 9), (2, 1), (5, 0)]
        stmt = select(LogNode.hash).where(repo._node_ids_in(ids))
        sql = str(stmt.compile(connection, compile_kwargs={"literal_binds": True}))
        plan = " | ".join(
            str(row[-1]) for row in session.execute(text("EXPLAIN QUERY PLAN " + sql))
        )
    assert "SCAN tlog_nodes" not in plan, plan
    assert "SEARCH tlog_nodes" in plan, plan
