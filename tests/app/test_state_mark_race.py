"""The saved state's mark and text are read in two statements: a row another worker replaced
between them (another through, other pins) is never taken for the state the mark named."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

import app.events.state as state_store
from app.events.repository import EventRepository
from app.storage.engine import Database

from .helpers import new_key, seed_number, signed_event

FORGE = seed_number("000")
SUFFIX = FORGE.rsplit(":", 1)[1]


@pytest.mark.parametrize("replaced", ["other_pins", "other_through"])
def test_a_row_replaced_between_mark_and_text_falls_back_to_the_merge(
    seeded: TestClient,
    database: Database,
    identity: Any,
    monkeypatch: pytest.MonkeyPatch,
    replaced: str,
) -> None:
    event = signed_event(new_key("w"), FORGE, seq=1)
    assert seeded.post(f"/pith/{SUFFIX}/action/replication_record", json=event).status_code == 201
    served = seeded.get(f"/pith/{SUFFIX}/state.json").content  # saved by this read
    # this process's recent copy forgotten: the text must come from the row
    monkeypatch.setattr(state_store, "_RECENT", state_store._RecentStates(1 << 20))
    real = EventRepository.saved_state

    def swapped(self: EventRepository, subject: str) -> tuple[int, str, str] | None:
        saved = real(self, subject)
        assert saved is not None
        if replaced == "other_pins":  # a worker configured with other pins saved its state
            return saved[0], "0" * 64, '{"bogus":true}'
        return saved[0] + 1, saved[1], '{"bogus":true}'

    monkeypatch.setattr(EventRepository, "saved_state", swapped)
    with database.read() as session:
        assert state_store.saved_state_bytes(session, identity, FORGE) is None
        state, _, raw = state_store.build_sealed(session, identity, FORGE)
    assert raw == served and "bogus" not in state
