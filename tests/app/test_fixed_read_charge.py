"""A fixed-size answer that merges a record's events afresh (a bundle at a historical log size)
costs the client a write token, so one client cannot loop distinct sizes; cheap fixed reads
(canonical JSON, event pages, a bundle whose saved state fits) cost none, cached or not."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from .conftest import make_client
from .helpers import assert_problem, new_key, seed_number, signed_event

FORGE = seed_number("000")
SUFFIX = FORGE.rsplit(":", 1)[1]
BUNDLE = f"/pith/{SUFFIX}/bundle.json"
EVENTS = f"/api/pith-number/{SUFFIX}/events.json"
CANONICAL = f"/pith/{SUFFIX}/canonical.json"


def _log_size_after_events(seeded: TestClient, count: int) -> int:
    key = new_key("w")
    for seq in range(1, count + 1):
        event = signed_event(key, FORGE, seq=seq)
        r = seeded.post(f"/pith/{SUFFIX}/action/replication_record", json=event)
        assert r.status_code == 201
    assert seeded.get(BUNDLE).status_code == 200  # the current state is saved
    return int(seeded.get("/log").json()["tree_size"])


def _empty_cache(client: TestClient) -> None:
    client.app.state.ctx.cache.invalidate()  # type: ignore[attr-defined]


def test_fresh_merges_at_fixed_sizes_are_charged_as_writes(
    seeded: Any, settings: Any, database: Any
) -> None:
    size = _log_size_after_events(seeded, 4)
    limited = settings.model_copy(update={"rate_limit_writes_per_minute": 2})
    with make_client(limited, database) as client:
        # at the current size the saved state fits: no merge, no token, however often
        for _ in range(4):
            _empty_cache(client)
            assert client.get(BUNDLE, params={"log_size": size}).status_code == 200
        assert client.get(BUNDLE, params={"log_size": size - 1}).status_code == 200  # a merge
        for _ in range(5):  # hits: no write token
            assert client.get(BUNDLE, params={"log_size": size - 1}).status_code == 200
        assert client.get(BUNDLE, params={"log_size": size - 2}).status_code == 200  # a merge
        r = client.get(BUNDLE, params={"log_size": size - 3})  # a third merge: the bucket is dry
        assert_problem(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
        assert client.get(BUNDLE).status_code == 200  # the current bundle is an ordinary read
        assert client.get(BUNDLE, params={"log_size": size - 1}).status_code == 200  # cached


def test_cheap_fixed_reads_cost_no_write_token(seeded: Any, settings: Any, database: Any) -> None:
    size = _log_size_after_events(seeded, 3)
    limited = settings.model_copy(update={"rate_limit_writes_per_minute": 1})
    with make_client(limited, database) as client:
        for n in range(4):  # every one a cache miss (the cache empties on each cosignature)
            _empty_cache(client)
            assert client.get(CANONICAL).status_code == 200
            assert client.get(EVENTS, params={"log_size": size - n % 3}).status_code == 200
        # the one token is still there: the first fresh merge is served, the next refused
        assert client.get(BUNDLE, params={"log_size": size - 1}).status_code == 200
        r = client.get(BUNDLE, params={"log_size": size - 2})
        assert_problem(r, 429, "rate_limited")
