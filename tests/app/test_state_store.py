"""The stored state grows by the events that arrived since it was saved, is saved by its
readers, never re-verifies a stored signature, and always equals the full merge."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from nacl.signing import VerifyKey
from sqlalchemy import Connection, text

import app.events.state as state_store
from app.events.service import Clock, check_event, ingest_batch
from app.storage.engine import Database
from pith_core.merge import merge

from .helpers import import_seeds, new_key, seed_number, signed_event

FORGE = seed_number("000")
SUFFIX = FORGE.rsplit(":", 1)[1]
ACTION = f"/pith/{SUFFIX}/action/replication_record"


def _saved_through(connection: Connection) -> int | None:
    row = connection.execute(
        text("SELECT through_log_index FROM state_cache WHERE subject = :s"), {"s": FORGE}
    ).first()
    return int(row[0]) if row else None


def _head(connection: Connection) -> int:
    return int(
        connection.execute(
            text("SELECT max(log_index) FROM events WHERE subject = :s"), {"s": FORGE}
        ).scalar()
    )


def _full_merge(client: TestClient, identity: Any) -> dict[str, Any]:
    events = client.get(f"/pith/{SUFFIX}/bundle.json").json()["events"]
    return merge(events, identity.pinned_keys, subject=FORGE)


def test_reads_grow_and_save_the_state_and_it_equals_the_merge(
    seeded: TestClient, connection: Connection, identity: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [new_key(f"w{i}") for i in range(3)]
    for i, key in enumerate(keys):
        assert seeded.post(ACTION, json=signed_event(key, FORGE, seq=1)).status_code == 201
        if i == 0:
            seeded.get(f"/pith/{SUFFIX}/state.json")  # saved here, then grown below
    assert _saved_through(connection) != _head(connection)  # writes compute no state
    state = seeded.get(f"/pith/{SUFFIX}/state.json").json()
    assert _saved_through(connection) == _head(connection)  # the reader saved it

    grown: list[bool] = []
    real_extend = state_store.extend_state_sealed

    def spy(*args: Any) -> Any:
        result = real_extend(*args)
        grown.append(result is not None)
        return result

    monkeypatch.setattr(state_store, "extend_state_sealed", spy)
    # a second event in w0's slot (an equivocation) and one more record, then read
    other = signed_event(keys[0], FORGE, seq=1, payload={"claim_id": "c", "verdict": "error"})
    assert seeded.post(ACTION, json=other).json()["equivocation"] is True
    assert seeded.post(ACTION, json=signed_event(keys[1], FORGE, seq=2)).status_code == 201
    state = seeded.get(f"/pith/{SUFFIX}/state.json").json()
    assert grown == [True]  # grown from the saved state, not merged from scratch
    assert state == _full_merge(seeded, identity)
    assert state["equivocation_count"] == 1 and len(state["current"]["replication_records"]) == 3


def test_stored_events_are_never_verified_again(
    seeded: TestClient, connection: Connection, identity: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for seq in (1, 2):
        assert seeded.post(ACTION, json=signed_event(new_key(), FORGE, seq=seq)).status_code == 201
    calls: list[int] = []
    real_verify = VerifyKey.verify

    def counting(self: VerifyKey, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real_verify(self, *args, **kwargs)

    monkeypatch.setattr(VerifyKey, "verify", counting)
    connection.execute(text("DELETE FROM state_cache"))  # force a rebuild from the log
    state = seeded.get(f"/pith/{SUFFIX}/state.json").json()
    assert calls == []  # neither the rebuild nor growing checks a stored signature again
    assert state["valid_event_count"] == 4
    assert seeded.post(ACTION, json=signed_event(new_key(), FORGE, seq=3)).status_code == 201
    assert calls == [1]  # the new event, on its way in
    assert seeded.get(f"/pith/{SUFFIX}/state.json").json()["valid_event_count"] == 5
    assert calls == [1]
    monkeypatch.undo()
    assert seeded.get(f"/pith/{SUFFIX}/state.json").json() == _full_merge(seeded, identity)


def test_concurrent_stale_reads_compute_the_state_once(
    backend: str, fresh_databases: Any, identity: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight threads read a stale state at once (own connections, a real database): one merges,
    the others wait and read what it saved."""
    db = Database(fresh_databases.new(backend))
    try:
        import_seeds(db, identity)
        with db.write() as session:
            event = check_event(signed_event(new_key(), FORGE), identity, Clock.now(300))
            ingest_batch(session, [event])
        merges: list[int] = []
        real_merge = state_store.merge_sealed

        def counting_merge(*args: Any, **kwargs: Any) -> Any:
            merges.append(1)
            return real_merge(*args, **kwargs)

        monkeypatch.setattr(state_store, "merge_sealed", counting_merge)
        monkeypatch.setattr(state_store, "extend_state_sealed", lambda *a: None)  # always merge
        gate = threading.Barrier(8)
        results: list[str] = []

        def reader() -> None:
            gate.wait()
            with db.read() as session:
                state = state_store.state_for_read(db, session, identity, FORGE)
            results.append(state["state_sha256"])

        threads = [threading.Thread(target=reader) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 8 and len(set(results)) == 1
        assert merges == [1]
    finally:
        db.dispose()
