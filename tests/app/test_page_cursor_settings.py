"""A fixed page's bytes depend on two settings beyond the log (the pinned registry keys and
PITH_MAX_LISTING_BYTES): a cursor carries a hash of them and is refused under others. And a
fixed bundle's state is taken from the saved state's mark and this process's recent states,
never by reading a large saved text it does not need."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.events.repository import EventRepository
from app.settings import Settings

from .conftest import make_client
from .helpers import assert_problem, new_key, seed_number, signed_event

FORGE = seed_number("000")
SUFFIX = FORGE.rsplit(":", 1)[1]
BUNDLE = f"/pith/{SUFFIX}/bundle.json"
EVENTS = f"/api/pith-number/{SUFFIX}/events.json"


def _post(client: TestClient, n: int) -> None:
    key = new_key("pager")
    events = [signed_event(key, FORGE, seq=i + 1) for i in range(n)]
    assert client.post("/api/events", json=events).status_code == 201


@pytest.mark.parametrize("path", [EVENTS, BUNDLE])
def test_a_cursor_cut_under_other_settings_is_refused(
    seeded: TestClient, settings: Any, database: Any, path: str
) -> None:
    _post(seeded, 4)
    cursor = seeded.get(path, params={"limit": 2}).json()["next"]
    assert cursor
    assert seeded.get(path, params={"after": cursor, "limit": 2}).status_code == 200
    other_bound = settings.model_copy(update={"max_listing_bytes": settings.max_listing_bytes + 1})
    pin = new_key("other").public_key.hex()  # (built anew: model_copy keeps cached pins)
    other_pins = Settings(**{**settings.model_dump(), "trusted_registry_keys": [pin]})
    for changed in (other_bound, other_pins):
        with make_client(changed, database) as client:
            r = client.get(path, params={"after": cursor, "limit": 2})
            assert_problem(r, 400, "stale_cursor")


def test_a_fixed_bundle_reads_no_saved_state_text_it_has_parsed_already(
    seeded: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _post(seeded, 3)
    size = int(seeded.get("/log").json()["tree_size"])
    current = seeded.get(BUNDLE).json()  # the state is saved (and kept parsed) by this read
    texts: list[str] = []
    for name in ("saved_state", "cached_state"):
        real = getattr(EventRepository, name)

        def spy(self: EventRepository, subject: str, real: Any = real, name: str = name) -> Any:
            texts.append(name)
            return real(self, subject)

        monkeypatch.setattr(EventRepository, name, spy)
    fixed = seeded.get(BUNDLE, params={"log_size": size})
    assert fixed.status_code == 200
    assert fixed.json()["state_sha256"] == current["state_sha256"]
    assert texts == []
