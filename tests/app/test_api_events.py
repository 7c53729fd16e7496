"""Taking signed events in-process: the action URLs, refusals (each naming its cause),
idempotence, equivocation, limits, batches, the changes feed, states and bundles."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, bindparam, text

from pith_core.keys import b64encode
from pith_core.merge import merge, state_sha256
from pith_core.verify import verify_document

from .conftest import make_client
from .helpers import ADMIN_TOKEN, assert_problem, new_key, seed_number, signed_event

FORGE = seed_number("000")
POET = seed_number("004")
SUFFIX = FORGE.rsplit(":", 1)[1]
ACTION = f"/pith/{SUFFIX}/action/replication_record"


def _event_rows(connection: Connection) -> int:
    return int(connection.execute(text("SELECT count(*) FROM events")).scalar() or 0)


def _post(client: TestClient, url: str, event: Any) -> Any:
    return client.post(url, content=json.dumps(event), headers={"Content-Type": "application/json"})


def test_a_signed_replication_record_lands_in_the_state(seeded: TestClient) -> None:
    event = signed_event(new_key(), FORGE)
    r = _post(seeded, ACTION, event)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "created" and body["event_id"] == event["event_id"]
    assert body["equivocation"] is False
    state = seeded.get(f"/pith/{SUFFIX}/state.json").json()
    assert state["state_sha256"] == state_sha256(state)
    assert "state_sha256" not in body  # a write computes no state: its readers do, after it
    (entry,) = state["current"]["replication_records"]
    assert entry["event_id"] == event["event_id"] and entry["payload"] == event["payload"]
    record = seeded.get(f"/pith/{SUFFIX}.json").json()  # the read cache moved on
    assert record["verification_status"]["replication_records"] == 1
    assert record["event_summary"] == {"replication": 1}
    page = seeded.get(f"/pith/{SUFFIX}").text
    assert "forge-memory" in page and "replicated" in page


def test_resubmitting_is_idempotent(seeded: TestClient, connection: Connection) -> None:
    event = signed_event(new_key(), FORGE)
    first = _post(seeded, ACTION, event)
    rows = _event_rows(connection)
    again = _post(seeded, ACTION, event)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["status"] == "duplicate"
    assert again.json()["log_index"] == first.json()["log_index"]
    assert _event_rows(connection) == rows


def test_an_equivocation_is_stored_and_shown(seeded: TestClient) -> None:
    key = new_key()
    a = signed_event(key, FORGE, seq=1, payload={"claim_id": "c", "verdict": "replicated"})
    b = signed_event(key, FORGE, seq=1, payload={"claim_id": "c", "verdict": "not_replicated"})
    assert _post(seeded, ACTION, a).status_code == 201
    r = _post(seeded, ACTION, b)
    assert r.status_code == 201 and r.json()["equivocation"] is True
    state = seeded.get(f"/pith/{SUFFIX}/state.json").json()
    assert state["equivocation_count"] == 1
    (group,) = state["equivocations"]
    assert sorted(group["event_ids"]) == sorted([a["event_id"], b["event_id"]])
    assert state["current"]["replication_records"] == []
    assert seeded.get(f"/pith/{SUFFIX}.json").json()["verification_status"]["equivocations"] == 1
    events = seeded.get(f"/api/pith-number/{SUFFIX}/events.json").json()["events"]
    assert {a["event_id"], b["event_id"]} <= {e["event_id"] for e in events}


def _break(event: dict[str, Any], how: str) -> dict[str, Any]:
    e = json.loads(json.dumps(event))
    if how == "signature":
        sig = bytearray(__import__("base64").b64decode(e["signature_b64"]))
        sig[5] ^= 1
        e["signature_b64"] = b64encode(bytes(sig))
    elif how == "payload":
        e["payload"]["verdict"] = "not_replicated"
    elif how == "fingerprint":
        e["signer"]["public_key_fingerprint"] = "0" * 32
    elif how == "shape":
        del e["prev"]
    elif how == "seq":
        e["seq"] = 0
    elif how == "float":
        e["payload"]["metric"] = 0.5
    return e


@pytest.mark.parametrize(
    ("how", "code", "field"),
    [
        ("signature", "bad_signature", "signature_b64"),
        ("payload", "event_id_mismatch", "event_id"),
        ("fingerprint", "fingerprint_mismatch", "signer.public_key_fingerprint"),
        ("shape", "bad_shape", None),
        ("seq", "bad_shape", "seq"),
        ("float", "not_canonical", "$.payload.metric"),
    ],
)
def test_an_invalid_event_is_refused_naming_why(
    seeded: TestClient, connection: Connection, how: str, code: str, field: str | None
) -> None:
    rows = _event_rows(connection)
    body = assert_problem(
        _post(seeded, ACTION, _break(signed_event(new_key(), FORGE), how)), 422, code
    )
    assert body.get("field") == field
    assert _event_rows(connection) == rows


def test_refusals_of_target_subject_and_time(seeded: TestClient, connection: Connection) -> None:
    rows = _event_rows(connection)
    key = new_key()
    anchor = signed_event(key, FORGE, target="timestamp_anchor")
    assert_problem(_post(seeded, ACTION, anchor), 422, "wrong_target")
    other = signed_event(key, POET)
    assert_problem(_post(seeded, ACTION, other), 422, "wrong_subject")
    record = signed_event(key, FORGE, target="graph", payload={"graph_snapshot": {}})
    assert_problem(
        _post(seeded, f"/pith/{SUFFIX}/action/replication_record", record),
        422,
        "not_registry_signed",
    )
    future = signed_event(key, FORGE, created_at="2099-01-01T00:00:00Z")
    assert_problem(_post(seeded, ACTION, future), 422, "created_in_future")
    assert_problem(
        _post(seeded, "/pith/AAAAAAAA/action/replication_record", signed_event(key, FORGE)), 404
    )
    assert_problem(_post(seeded, f"/pith/{SUFFIX}/action/record", signed_event(key, FORGE)), 422)
    assert _event_rows(connection) == rows


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"", "empty_body"),
        (b"{not json", "malformed_json"),
        (b'{"a":1,"a":2}', "malformed_json"),
        (b"[1, NaN]", "malformed_json"),
    ],
)
def test_a_body_that_is_not_json_is_a_400(seeded: TestClient, raw: bytes, code: str) -> None:
    assert_problem(seeded.post(ACTION, content=raw), 400, code)


def test_strings_a_column_cannot_hold_are_kept_in_the_signed_event(seeded: TestClient) -> None:
    event = signed_event(
        new_key(), FORGE, signer_id="nul\x00byte", payload={"claim_id": "c\x00", "verdict": "error"}
    )
    r = _post(seeded, ACTION, event)
    assert r.status_code == 201, r.text
    (stored,) = [
        e
        for e in seeded.get(f"/api/pith-number/{SUFFIX}/events.json").json()["events"]
        if e["event_id"] == event["event_id"]
    ]
    assert stored == event


def test_every_action_url_has_its_target() -> None:
    from app.events.routes import Action
    from app.events.service import ACTION_TARGETS

    assert {a.value for a in Action} == set(ACTION_TARGETS)


def test_the_anchor_and_attestation_actions(seeded: TestClient) -> None:
    key = new_key()
    for action, target in [
        ("timestamp_anchor", "timestamp_anchor"),
        ("storage_attestation", "storage_attestation"),
        ("author_attestation", "author_attestation"),
        ("citation_signature", "citation_signature"),
    ]:
        event = signed_event(
            key,
            FORGE,
            target=target,
            seq={
                "timestamp_anchor": 1,
                "storage_attestation": 2,
                "author_attestation": 3,
                "citation_signature": 4,
            }[action],
        )
        assert _post(seeded, f"/pith/{SUFFIX}/action/{action}", event).status_code == 201
    doc = seeded.get(f"/pith/{SUFFIX}.json").json()
    status = doc["verification_status"]
    # listed, but a throwaway key's statements are no evidence (trust policy: tests/app/test_trust)
    assert not (
        status["externally_anchored"] or status["storage_verified"] or status["author_attested"]
    )
    assert doc["trust"]["anchors"] == {"listed": 1, "verified": 0, "verified_by": []}
    assert status["weak_author_claims"] == 1 and status["strong_author_claims"] == 0
    assert status["citation_signatures"] == 1


def test_a_failure_mid_write_leaves_nothing(
    seeded: TestClient,
    settings,
    database,
    connection: Connection,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    import app.events.service as service

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("disk on fire")

    rows = _event_rows(connection)
    # fails after the event row is written, inside the same unit of work
    monkeypatch.setattr(service.EventRepository, "slot_taken", boom)
    with TestClient(make_client(settings, database).app, raise_server_exceptions=False) as c:
        r = _post(c, ACTION, signed_event(new_key(), FORGE))
    body = assert_problem(r, 500, "internal_error")
    assert "disk" not in body["detail"]
    assert _event_rows(connection) == rows
    signers = connection.execute(text("SELECT count(*) FROM signer_keys")).scalar()
    assert signers == 1  # only the registry's own key


def test_bodies_over_the_limit_get_413(seeded: TestClient, connection: Connection) -> None:
    event = signed_event(
        new_key(), FORGE, payload={"claim_id": "c", "verdict": "error", "log": "x" * 300_000}
    )
    raw = json.dumps(event).encode()
    assert_problem(seeded.post(ACTION, content=raw), 413, "body_too_large")

    def chunks():  # type: ignore[no-untyped-def]
        for i in range(0, len(raw), 16_384):
            yield raw[i : i + 16_384]

    assert_problem(seeded.post(ACTION, content=chunks()), 413, "body_too_large")
    assert_problem(
        seeded.post(
            "/api/records", content=chunks(), headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ),
        413,
    )
    assert _event_rows(connection) == 10


def test_writes_over_the_rate_get_429_with_retry_after(settings, database) -> None:  # type: ignore[no-untyped-def]
    limited = settings.model_copy(
        update={"rate_limit_writes_per_minute": 2, "rate_limit_reads_per_minute": 3}
    )
    with make_client(limited, database) as c:
        statuses = [c.post(ACTION, content=b"{}").status_code for _ in range(3)]
        assert statuses[:2] != [429, 429] and statuses[2] == 429
        r = c.post(ACTION, content=b"{}")
        body = assert_problem(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1 and "retry" in body["detail"]
        reads = [c.get("/healthz").status_code for _ in range(4)]
        assert reads == [200, 200, 200, 429]


class TestBatch:
    def test_all_stored_then_all_duplicates(self, seeded: TestClient) -> None:
        key = new_key()
        events = [
            signed_event(key, FORGE, seq=1),
            signed_event(key, POET, seq=1),
            signed_event(key, FORGE, seq=2),
        ]
        r = seeded.post("/api/events", json=events)
        assert r.status_code == 201, r.text
        assert r.json()["accepted"] == 3
        indices = [x["log_index"] for x in r.json()["results"]]
        assert indices == sorted(indices)
        again = seeded.post("/api/events", json={"events": events})
        assert again.status_code == 200 and again.json()["duplicates"] == 3
        state = seeded.get(f"/pith/{SUFFIX}/state.json").json()
        assert len(state["current"]["replication_records"]) == 2

    def test_a_large_batch_keeps_its_order_in_the_log(
        self, seeded: TestClient, connection: Connection
    ) -> None:
        key = new_key()
        events, prev = [], None
        for seq in range(1, 41):  # large enough for PostgreSQL's COPY path
            events.append(signed_event(key, FORGE if seq % 3 == 1 else POET, seq=seq, prev=prev))
            prev = events[-1]["event_id"]
        first = _post(seeded, ACTION, events[0])  # stored already: a duplicate in the batch
        assert first.status_code == 201
        r = seeded.post("/api/events", json=events)
        assert r.status_code == 201 and r.json()["accepted"] == 39 and r.json()["duplicates"] == 1
        results = r.json()["results"]
        assert {k: v for k, v in results[0].items() if k != "log"} == {
            "event_id": events[0]["event_id"],
            "log_index": first.json()["log_index"],
            "status": "duplicate",
        }
        # issue 15: a duplicate is proved at the leaf the first submission got
        assert results[0]["log"]["leaf_index"] == first.json()["log"]["leaf_index"]
        assert [x["event_id"] for x in results] == [e["event_id"] for e in events]
        indices = [x["log_index"] for x in results[1:]]
        assert indices == sorted(indices) and len(set(indices)) == 39
        rows = connection.execute(
            text("SELECT event_id, log_index, body FROM events WHERE log_index >= :i"),
            {"i": indices[0]},
        ).all()
        stored = {e: (i, json.loads(b)) for e, i, b in rows}
        for x, event in zip(results[1:], events[1:], strict=True):
            assert stored[x["event_id"]] == (x["log_index"], event)
        # one leaf an event, the leaves numbered without a gap
        leaves, events_stored, top = connection.execute(
            text(
                "SELECT (SELECT count(*) FROM tlog_leaves), (SELECT count(*) FROM events),"
                " (SELECT max(leaf_index) FROM tlog_leaves)"
            )
        ).one()
        assert leaves == events_stored == top + 1

    def test_a_stored_event_midway_is_a_duplicate_and_the_rest_stored_whole(
        self, seeded: TestClient, connection: Connection
    ) -> None:
        key = new_key()
        events = [signed_event(key, FORGE, seq=seq) for seq in range(1, 21)]
        assert _post(seeded, ACTION, events[10]).status_code == 201
        r = seeded.post("/api/events", json=events)
        assert r.status_code == 201, r.text
        assert (r.json()["accepted"], r.json()["duplicates"]) == (19, 1)
        assert r.json()["results"][10]["status"] == "duplicate"
        ids = [e["event_id"] for e in events]
        stored = connection.execute(
            text("SELECT count(*) FROM events WHERE event_id IN :ids").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": ids},
        ).scalar()
        leaves, events_stored = connection.execute(
            text("SELECT (SELECT count(*) FROM tlog_leaves), (SELECT count(*) FROM events)")
        ).one()
        assert stored == 20 and leaves == events_stored

    def test_one_bad_event_stores_none(self, seeded: TestClient, connection: Connection) -> None:
        key = new_key()
        good = signed_event(key, FORGE, seq=1)
        bad = _break(signed_event(key, FORGE, seq=2), "signature")
        body = assert_problem(seeded.post("/api/events", json=[good, bad]), 422, "invalid_events")
        assert body["errors"] == [
            {
                "index": 1,
                "event_id": bad["event_id"],
                "reason": "bad_signature",
                "detail": body["errors"][0]["detail"],
                "field": "signature_b64",
            }
        ]
        unknown = signed_event(key, "pith:2026:AAAAAAAAAAAAAAAAAAAAAAAAAA")
        assert_problem(seeded.post("/api/events", json=[good, unknown]), 404, "unknown_subject")
        assert_problem(seeded.post("/api/events", json=[]), 422, "bad_batch")
        assert_problem(seeded.post("/api/events", json={"x": 1}), 422, "bad_batch")
        assert _event_rows(connection) == 10


def test_the_changes_feed_pages_through_the_log(seeded: TestClient) -> None:
    seen: list[int] = []
    after = "0"
    while True:
        page = seeded.get("/api/events", params={"after": after, "limit": 3}).json()
        if not page["events"]:
            assert page["head"] == seen[-1]  # (PostgreSQL sequences skip rolled-back indices)
            break
        seen.extend(item["log_index"] for item in page["events"])
        assert all(item["event"]["event_id"].startswith("sha256:") for item in page["events"])
        after = page["next"]
    assert len(seen) == 10 and seen == sorted(seen)
    event = signed_event(new_key(), FORGE)
    _post(seeded, ACTION, event)
    page = seeded.get("/api/events", params={"after": after}).json()
    assert [item["event"] for item in page["events"]] == [event]
    by_index = seeded.get("/api/events", params={"after": str(seen[-1])}).json()
    assert by_index["events"] == page["events"]
    assert_problem(seeded.get("/api/events", params={"after": "bogus!"}), 400, "bad_cursor")
    assert_problem(seeded.get("/api/events", params={"limit": 0}), 422, "validation_error")


def test_bundle_and_state_recompute_offline(seeded: TestClient, identity) -> None:  # type: ignore[no-untyped-def]
    _post(seeded, ACTION, signed_event(new_key(), FORGE))
    bundle = seeded.get(f"/pith/{SUFFIX}/bundle.json").json()
    assert seeded.get(f"/.well-known/pith/{SUFFIX}/bundle.json").json() == bundle
    state = seeded.get(f"/pith/{SUFFIX}/state.json").json()
    offline = merge(bundle["events"], [identity.key.public_key], subject=FORGE)
    assert offline == state and bundle["state_sha256"] == state["state_sha256"]
    assert len(bundle["events"]) == 3
    graph = seeded.get(f"/api/pith-number/{SUFFIX}/graph.json").json()
    assert graph["graph_snapshot"]["paper"]["title"].startswith("FORGE")


def test_a_registered_papers_bundle_verifies_under_this_registrys_key(
    client: TestClient, identity
) -> None:  # type: ignore[no-untyped-def]
    from .test_api_records import ADMIN, PAPER

    doc = client.post("/api/records", json=PAPER, headers=ADMIN).json()
    suffix = doc["pith_number"].rsplit(":", 1)[1]
    bundle = client.get(f"/pith/{suffix}/bundle.json").json()
    kind, checks = verify_document(bundle, identity.key.public_key)
    assert kind == "bundle" and all(c.passed for c in checks), checks
