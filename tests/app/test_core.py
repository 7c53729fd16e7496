"""The pieces in front of the routes: token buckets, the read cache, content negotiation,
conditional and HEAD requests, and how long another worker's write takes to show."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from app.core.cache import ReadCache
from app.core.guard import TokenBuckets
from app.core.negotiation import wants_json
from app.main import create_app
from app.settings import Settings

from .conftest import make_client
from .helpers import import_seeds, new_key, seed_number, signed_event


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_buckets_burst_then_refill() -> None:
    clock = FakeClock()
    buckets = TokenBuckets(60, clock=clock)  # one a second, bursts of 60
    assert all(buckets.take("a") == 0 for _ in range(60))
    wait = buckets.take("a")
    assert wait == pytest.approx(1.0)
    assert buckets.take("b") == 0  # per client
    clock.now += 1.0
    assert buckets.take("a") == 0
    assert buckets.take("a") > 0


def test_read_cache_follows_the_log_head() -> None:
    clock, head = FakeClock(), [5]
    cache = ReadCache(lambda: head[0], ttl=1.0, clock=clock)
    assert cache.get("k") is None
    cache.put("k", "v5", built_at_head=5)
    assert cache.get("k") == "v5"
    head[0] = 6  # another worker wrote: not seen until the ttl passes
    assert cache.get("k") == "v5"
    clock.now += 1.0
    assert cache.get("k") is None
    cache.put("k", "stale", built_at_head=5)  # built before the head moved: not kept
    assert cache.get("k") is None
    cache.advance(7)  # this worker wrote
    assert cache.head == 7 and cache.get("k") is None


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/ld+json", "application/ld+json"),
        ("application/json", "application/json"),
        ("*/*", None),
        ("", None),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", None),
        ("application/json, text/html;q=0.5", "application/json"),
        ("application/ld+json, application/json", "application/ld+json"),
    ],
)
def test_accept_negotiation(accept: str, expected: str | None) -> None:
    assert wants_json(accept) == expected


def test_etag_and_304(seeded: TestClient) -> None:
    first = seeded.get("/pith/GWT7BTE6.json")  # rendered by the route
    second = seeded.get(  # answered from the cache
        "/pith/GWT7BTE6.json", headers={"Accept-Encoding": "identity"}
    )
    assert first.content == second.content and first.headers["etag"] == second.headers["etag"]
    assert int(second.headers["content-length"]) == len(second.content)
    not_modified = seeded.get(
        "/pith/GWT7BTE6.json", headers={"If-None-Match": first.headers["etag"]}
    )
    assert not_modified.status_code == 304 and not_modified.content == b""
    page = seeded.get("/pith/GWT7BTE6")
    assert "Accept" in page.headers["vary"].split(", ")
    assert page.headers["etag"] != first.headers["etag"]


def test_another_workers_write_shows_within_the_cache_period(settings, database, identity) -> None:  # type: ignore[no-untyped-def]
    import_seeds(database, identity)
    # the period must outlast one write on a loaded 2-core machine, or the reader re-checks the
    # log head before the "still cached" assertion and the test says nothing about the period
    period = 2.0
    quick = settings.model_copy(update={"read_cache_seconds": period})
    subject = seed_number("000")
    url = "/pith/GWT7BTE6.json"
    with make_client(quick, database) as reader, make_client(quick, database) as writer:
        count = lambda: reader.get(url).json()["verification_status"]["replication_records"]  # noqa: E731
        assert count() == 0
        r = writer.post(
            "/pith/GWT7BTE6/action/replication_record",
            content=json.dumps(signed_event(new_key(), subject)),
        )
        assert r.status_code == 201
        assert writer.get(url).json()["verification_status"]["replication_records"] == 1
        assert count() == 0  # the reader's cached copy, younger than its period
        time.sleep(period + 0.1)
        assert count() == 1


def test_a_started_service_freezes_what_it_holds(settings: Settings, database) -> None:  # type: ignore[no-untyped-def]
    """Startup moves the worker's long-lived objects out of the collector's reach; with the
    setting off (as this test process runs) nothing is frozen."""
    import gc

    assert gc.get_freeze_count() == 0
    with TestClient(create_app(settings, database=database)):
        assert gc.get_freeze_count() == 0  # off in this process (tests/conftest.py)
    on = settings.model_copy(update={"gc_freeze_at_startup": True})
    try:
        with TestClient(create_app(on, database=database)) as client:
            frozen = gc.get_freeze_count()
            assert frozen > 10_000  # modules, routes, schemas
            assert client.get("/healthz").status_code == 200
    finally:
        gc.unfreeze()
