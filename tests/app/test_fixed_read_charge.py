"""A fixed-size answer built afresh (a historical log size is a full merge) costs the client a
write token, so one client cannot loop distinct sizes; a cached one costs nothing extra."""

from __future__ import annotations

from typing import Any

from .conftest import make_client
from .helpers import assert_problem, new_key, seed_number, signed_event

FORGE = seed_number("000")
SUFFIX = FORGE.rsplit(":", 1)[1]
BUNDLE = f"/pith/{SUFFIX}/bundle.json"


def test_uncached_fixed_reads_are_charged_as_writes(
    seeded: Any, settings: Any, database: Any
) -> None:
    key = new_key("w")
    for seq in (1, 2, 3):
        event = signed_event(key, FORGE, seq=seq)
        r = seeded.post(f"/pith/{SUFFIX}/action/replication_record", json=event)
        assert r.status_code == 201
    size = int(seeded.get("/log").json()["tree_size"])
    limited = settings.model_copy(update={"rate_limit_writes_per_minute": 2})
    with make_client(limited, database) as client:
        assert client.get(BUNDLE, params={"log_size": size}).status_code == 200  # a miss
        for _ in range(5):  # hits: no write token
            assert client.get(BUNDLE, params={"log_size": size}).status_code == 200
        assert client.get(BUNDLE, params={"log_size": size - 1}).status_code == 200  # a miss
        r = client.get(BUNDLE, params={"log_size": size - 2})  # a third miss: the bucket is dry
        assert_problem(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
        assert client.get(BUNDLE).status_code == 200  # the current bundle is an ordinary read
