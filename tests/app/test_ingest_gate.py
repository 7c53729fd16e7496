"""Event batches are taken one at a time in a worker process: two posted at once are verified
and stored in turn (they ran no faster side by side and cost more CPU), and both are stored."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import httpx
from fastapi.testclient import TestClient

from app.events import routes

from .helpers import new_key, seed_number, signed_event

FORGE = seed_number("000")


def test_two_batches_posted_at_once_are_taken_in_turn(seeded: TestClient, monkeypatch: Any) -> None:
    inside = 0
    most_inside = 0
    lock = threading.Lock()
    second_arrived = threading.Event()
    arrivals: list[int] = []
    real_ingest = routes._ingest

    def watched(ctx: Any, raw: bytes) -> Any:
        nonlocal inside, most_inside
        with lock:
            inside += 1
            most_inside = max(most_inside, inside)
            arrivals.append(inside)
            if len(arrivals) == 2:
                second_arrived.set()
        try:
            # the first batch lingers: without the gate the second comes in meanwhile
            second_arrived.wait(1.0)
            return real_ingest(ctx, raw)
        finally:
            with lock:
                inside -= 1

    monkeypatch.setattr(routes, "_ingest", watched)
    bodies = []
    for name in ("one", "two"):
        key = new_key(name)
        batch = [signed_event(key, FORGE, seq=s, signer_id=name) for s in (1, 2, 3)]
        bodies.append(json.dumps(batch).encode())

    async def both() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=seeded.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await asyncio.gather(
                *(
                    c.post("/api/events", content=b, headers={"content-type": "application/json"})
                    for b in bodies
                )
            )

    answers = asyncio.run(both())
    assert [r.status_code for r in answers] == [201, 201], [r.text[:200] for r in answers]
    assert [r.json()["accepted"] for r in answers] == [3, 3]
    assert most_inside == 1 and len(arrivals) == 2
