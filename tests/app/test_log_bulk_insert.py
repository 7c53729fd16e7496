"""app/log's bulk paths (issue 14's ingest figure): a batch's rows go to the database by the
driver (COPY on PostgreSQL, executemany on SQLite), and must store what SQLAlchemy's own insert
stores; the tree's node look-ups must search the primary key, not scan the table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, select, text
from sqlalchemy.orm import Session

from app.events import repository as event_repository
from app.log import repository as log_repository
from app.log.models import LogNode
from app.log.repository import COPY_THRESHOLD, LogRepository
from app.records import repository as record_repository
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


@pytest.mark.parametrize(
    ("statement", "params", "table"),
    [
        (log_repository._NODE_BY_ID, (2, 1), "tlog_nodes"),
        (event_repository._EXISTING_IDS.format("?, ?, ?"), ("a", "b", "c"), "events"),
        (record_repository._SUBMITTED_AT.format("?, ?"), ("a", "b"), "records"),
    ],
    ids=["node", "existing_ids", "submitted_at"],
)
def test_a_batch_look_up_searches_an_index(
    connection: Connection, statement: str, params: tuple[object, ...], table: str
) -> None:
    """The driver's statements of a batch (app/storage/driver.py) search, never scan: SQLite
    planned a row-value IN over tlog_nodes as a scan once, and a batch ran it every time."""
    if connection.dialect.name != "sqlite":
        pytest.skip("SQLite's planner only (PostgreSQL's custom plans: engine.py)")
    rows = connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
    plan = " | ".join(str(row[-1]) for row in rows)
    assert f"SCAN {table}" not in plan, plan
    assert f"SEARCH {table}" in plan, plan


def test_nodes_are_found_by_id_and_missing_ones_left_out(
    seeded: TestClient, connection: Connection
) -> None:
    """`LogRepository.nodes` on both databases: what it answers is what the table holds, for
    nodes of several levels at once, and an id with no node is left out."""
    with Session(connection) as session:
        stored = {
            (int(lv), int(ix)): bytes(h)
            for lv, ix, h in session.execute(select(LogNode.level, LogNode.idx, LogNode.hash))
        }
        assert len({lv for lv, _ in stored}) >= 2, stored  # the seeds' tree has inner nodes
        absent = (max(lv for lv, _ in stored) + 1, 0)
        found = LogRepository(session).nodes([*stored, absent])
    assert found == stored
