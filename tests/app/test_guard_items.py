"""Issue 14's smaller items: write limits shared by every worker process (in the database), the
rightmost forwarded hop, redirects to the configured public URL, security headers, a body-read
timeout, auth before validation, degenerate keys refused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.guard import GuardMiddleware

from .conftest import make_client
from .helpers import ADMIN_TOKEN, BASE_URL, assert_problem, new_key, seed_number, signed_event

FORGE = seed_number("000")
ACTION = f"/pith/{FORGE.rsplit(':', 1)[1]}/action/replication_record"


def test_the_write_limit_is_shared_by_every_process(
    seeded: TestClient, settings: Any, database: Any
) -> None:
    """Two apps over one database stand for two worker processes: 3 writes a minute in all."""
    limited = settings.model_copy(update={"rate_limit_writes_per_minute": 3})
    key = new_key()
    with make_client(limited, database) as one, make_client(limited, database) as two:
        codes = [
            client.post(ACTION, json=signed_event(key, FORGE, seq=i + 1)).status_code
            for i, client in enumerate([one, two, one, two, one])
        ]
        assert codes == [201, 201, 201, 429, 429]
        r = two.post(ACTION, json=signed_event(key, FORGE, seq=9))
        assert_problem(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1


def _scope(xff: list[bytes]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"x-forwarded-for", v) for v in xff],
        "client": ("10.0.0.9", 1234),
    }


def test_the_client_is_the_rightmost_untrusted_hop() -> None:
    def guard(hops: int, trust: bool = True) -> GuardMiddleware:
        return GuardMiddleware(
            None,  # type: ignore[arg-type]
            max_body_bytes=1024,
            reads_per_minute=0,
            writes_per_minute=0,
            trust_forwarded_for=trust,
            forwarded_hops=hops,
        )

    spoofed = _scope([b"6.6.6.6, 1.2.3.4", b"10.0.0.1"])
    assert guard(1)._client(spoofed) == "10.0.0.1"
    assert guard(2)._client(spoofed) == "1.2.3.4"
    assert guard(9)._client(spoofed) == "6.6.6.6"
    assert guard(1, trust=False)._client(spoofed) == "10.0.0.9"
    assert guard(1)._client(_scope([])) == "10.0.0.9"


def test_redirects_go_to_the_public_url_not_the_host_header(seeded: TestClient) -> None:
    for url in ("/paper/GWT7BTE6", "/api/pith-number/resolve?arxiv=2606.22932"):
        r = seeded.get(url, headers={"Host": "evil.example"}, follow_redirects=False)
        assert r.status_code in (301, 302, 307, 308), url
        assert r.headers["location"].startswith(BASE_URL + "/"), r.headers["location"]


def test_security_headers_on_every_answer(seeded: TestClient) -> None:
    for url in ("/pith/GWT7BTE6.json", "/pith/GWT7BTE6", "/nope", "/healthz"):
        r = seeded.get(url)
        assert r.headers["x-content-type-options"] == "nosniff", url
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "script-src 'none'" in r.headers["content-security-policy"]


def test_a_stalled_body_is_cut_off_with_408() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body", False):
            pass
        raise AssertionError("the body never arrives")

    guard = GuardMiddleware(
        app,
        max_body_bytes=1024,
        reads_per_minute=0,
        writes_per_minute=0,
        body_timeout_seconds=0.2,
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if not sent and not getattr(receive, "started", False):
            receive.started = True  # type: ignore[attr-defined]
            return {"type": "http.request", "body": b"{", "more_body": True}
        await asyncio.sleep(3600)
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/events", "headers": []}
    asyncio.run(asyncio.wait_for(guard(scope, receive, send), 5))
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]


@pytest.mark.parametrize("url", ["/api/records", "/api/import", "/api/workers", "/api/jobs"])
def test_admin_acts_check_the_token_before_the_body(seeded: TestClient, url: str) -> None:
    garbage = {"nothing": ["that", "validates"]}
    assert_problem(seeded.post(url, json=garbage), 401, "admin_token_required")
    bad = {"Authorization": "Bearer wrong"}
    assert_problem(seeded.post(url, json=garbage, headers=bad), 403, "admin_token_invalid")
    ok = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert seeded.post(url, json=garbage, headers=ok).status_code == 422


@pytest.mark.parametrize(
    "key_hex",
    [
        "00" * 32,  # all zero
        "01" + "00" * 31,  # the neutral element
        "ec" + "ff" * 30 + "7f",  # not canonical (p - 1, ...)
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    ],
)
def test_degenerate_worker_keys_are_refused(seeded: TestClient, key_hex: str) -> None:
    r = seeded.post(
        "/api/workers",
        json={"worker_id": "gpu-x", "public_key_hex": key_hex},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    body = assert_problem(r, 422)
    assert "public_key_hex" in body["field"]


def test_a_failing_write_limiter_answers_503_with_retry_after(
    seeded: TestClient, settings: Any, database: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limiter's database failing (down, locked, pool exhausted) is a 503 the client may
    retry, never a bare 500; the event is not stored."""
    from sqlalchemy.exc import OperationalError

    from app.core.ratelimit import SharedBuckets

    def down(self: SharedBuckets, client: str) -> float:
        raise OperationalError("UPDATE rate_buckets", {}, Exception("server closed the connection"))

    limited = settings.model_copy(update={"rate_limit_writes_per_minute": 3})
    event = signed_event(new_key(), FORGE)
    with make_client(limited, database) as client:
        monkeypatch.setattr(SharedBuckets, "_take", down)
        r = client.post(ACTION, json=event)
        problem = assert_problem(r, 503, "busy")
        assert r.headers["retry-after"] == "1" and "limiter" in problem["detail"]
        monkeypatch.undo()
        events = client.get(f"/api/pith-number/{FORGE}/events.json").json()["events"]
        assert event["event_id"] not in {e["event_id"] for e in events}
        assert client.post(ACTION, json=event).status_code == 201
