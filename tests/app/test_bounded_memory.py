"""Bounded memory: the read cache is keyed on the normalised request and bounded in bytes (LRU);
feed pages are bounded in bytes with cursors; record.json does not inline every event."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi.testclient import TestClient

from app.core.cache import ReadCache
from app.core.context import Rendered

from .conftest import make_client
from .helpers import new_key, seed_number, signed_event

FORGE = seed_number("000")
SUFFIX = FORGE.rsplit(":", 1)[1]


def _batch(n: int, *, pad: int = 0, start_seq: int = 1) -> list[dict[str, Any]]:
    key = new_key("bulk")
    return [
        signed_event(
            key,
            FORGE,
            seq=start_seq + i,
            payload={"claim_id": "c", "verdict": "inconclusive", "pad": "x" * pad},
        )
        for i in range(n)
    ]


def test_cache_busting_query_strings_share_one_entry(seeded: TestClient) -> None:
    cache = seeded.app.state.ctx.cache  # type: ignore[attr-defined]
    first = seeded.get(f"/pith/{SUFFIX}/state.json")
    size = cache.size_bytes
    assert size > len(first.content)
    for _ in range(30):
        r = seeded.get(f"/pith/{SUFFIX}/state.json", params={"cb": secrets.token_hex(8)})
        assert r.content == first.content
    assert cache.size_bytes == size  # no new entry for any of them
    # a parameter a route does read still makes its own entry, in any order
    a = seeded.get("/api/records", params={"limit": 2, "offset": 1, "cb": "1"})
    b = seeded.get("/api/records?offset=1&zz=2&limit=2")
    assert a.content == b.content and cache.size_bytes > size


def test_the_read_cache_is_a_byte_bounded_lru() -> None:
    cache = ReadCache(lambda: 7, ttl=60.0, max_bytes=64 * 1024)
    entry = Rendered.of(b"x" * 4000, "application/json")
    for i in range(100):
        cache.put(("k", i), entry, 7)
        if i >= 1:
            assert cache.get(("k", 0)) is not None  # kept: read after every put
    assert cache.size_bytes <= 64 * 1024
    assert cache.get(("k", 0)) is not None and cache.get(("k", 1)) is None
    assert cache.get(("k", 99)) is not None
    cache.put(("big",), Rendered.of(b"y" * 17000, "application/json"), 7)  # > 1/4 of the bound
    assert cache.get(("big",)) is None


def test_feed_pages_are_bounded_in_bytes_and_the_cursor_goes_through(
    seeded: TestClient, settings: Any, database: Any
) -> None:
    events = _batch(12, pad=20_000)
    assert seeded.post("/api/events", json=events).status_code == 201
    small = settings.model_copy(update={"max_listing_bytes": 64 * 1024})
    with make_client(small, database) as client:
        seen: list[str] = []
        after = "0"
        pages = 0
        while True:
            r = client.get("/api/events", params={"after": after, "limit": 1000})
            page = r.json()
            assert len(r.content) <= 64 * 1024 + 25_000  # the bound, or one event past it
            seen.extend(item["event"]["event_id"] for item in page["events"])
            pages += 1
            if page["count"] == 0:
                break
            after = page["next"]
    assert pages >= 5
    assert len(seen) == len(set(seen))
    assert [e["event_id"] for e in events] == seen[-12:]


def test_record_json_holds_the_latest_events_not_all(seeded: TestClient) -> None:
    assert seeded.post("/api/events", json=_batch(130)).status_code == 201
    doc = seeded.get(f"/pith/{SUFFIX}.json").json()
    assert doc["events_total"] == 130 and len(doc["events"]) == 100
    assert doc["event_summary"] == {"replication": 130}
    assert doc["verification_status"]["replication_records"] == 130


def test_concurrent_misses_of_one_read_render_once(seeded: TestClient, monkeypatch: Any) -> None:
    """Twenty cache-busting reads at once: exactly one render; the others await it on the event
    loop. The render is held until all twenty are in, so every one of them is concurrent."""
    import asyncio
    import threading

    import httpx

    app = seeded.app
    ctx = app.state.ctx  # type: ignore[attr-defined]
    renders: list[Any] = []
    real_render = ctx.render
    real_once = ctx._render_once
    asking = 20
    entered: list[Any] = []
    all_in = threading.Event()

    async def counting_once(key: Any, build: Any) -> Any:
        entered.append(key)
        if len(entered) == asking:
            all_in.set()
        return await real_once(key, build)

    def counting(key: Any, build: Any) -> Any:
        renders.append(key)
        assert all_in.wait(30), f"only {len(entered)} of {asking} reads arrived"
        return real_render(key, build)

    monkeypatch.setattr(ctx, "_render_once", counting_once)
    monkeypatch.setattr(ctx, "render", counting)
    monkeypatch.setattr(ctx.cache, "get", lambda key: None)  # every ask is a miss

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await asyncio.gather(
                *(c.get(f"/pith/{SUFFIX}/state.json", params={"cb": i}) for i in range(asking))
            )

    answers = asyncio.run(burst())
    assert [r.status_code for r in answers] == [200] * asking
    assert len({r.content for r in answers}) == 1
    assert len(set(entered)) == 1 and len(renders) == 1
