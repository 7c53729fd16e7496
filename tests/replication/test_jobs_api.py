"""The job API in-process (SQLite and PostgreSQL, each test rolled back): admin acts on workers
and jobs, the worker's signed calls through its own client (`replication.client.JobClient`),
every refusal naming its cause, and a record landing in the log, the state and the page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from pith_core.keys import fingerprint
from pith_core.merge import merge
from pith_core.request_auth import sign_request
from replication.client import JobAPIError
from tests.app.conftest import make_client
from tests.app.helpers import assert_problem, import_seeds, new_key
from tests.replication.jobs_support import (
    ADMIN,
    FORGE,
    SAGE,
    job_client,
    queue,
    record_event,
    register,
)


def _count(connection: Connection, table: str) -> int:
    return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0)


def _expire_leases(connection: Connection) -> None:
    """Move every lease into the past (what waiting out the TTL would do, without the wait)."""
    past = datetime.now(UTC) - timedelta(seconds=5)
    connection.execute(
        text("UPDATE jobs SET lease_expires_at = :t WHERE state = 'leased'"), {"t": past}
    )


def _status(call: Any) -> int:
    with pytest.raises(JobAPIError) as info:
        call()
    return info.value.status


def _code(call: Any) -> str:
    with pytest.raises(JobAPIError) as info:
        call()
    return str(info.value.problem["type"]).rsplit(":", 1)[1]


# Admin: workers


def test_registering_a_worker_needs_the_admin_token(seeded: TestClient) -> None:
    body = {"worker_id": "w1", "public_key_hex": new_key().public_key.hex()}
    assert_problem(seeded.post("/api/workers", json=body), 401, "admin_token_required")
    wrong = {"Authorization": "Bearer nope"}
    assert_problem(
        seeded.post("/api/workers", json=body, headers=wrong), 403, "admin_token_invalid"
    )
    assert seeded.get("/api/workers").json()["workers"] == []


def test_a_registered_worker_is_listed_with_its_fingerprint(seeded: TestClient) -> None:
    key = new_key()
    r = seeded.post(
        "/api/workers",
        json={"worker_id": "w1", "public_key_hex": key.public_key.hex()},
        headers=ADMIN,
    )
    assert r.status_code == 201, r.text
    assert r.json()["fingerprint"] == fingerprint(key.public_key)
    again = seeded.post(
        "/api/workers",
        json={"worker_id": "w1", "public_key_hex": key.public_key.hex()},
        headers=ADMIN,
    )
    assert again.status_code == 200 and again.json() == r.json()
    (listed,) = seeded.get("/api/workers").json()["workers"]
    assert listed["worker_id"] == "w1" and listed["public_key_hex"] == key.public_key.hex()


def test_one_name_one_key(seeded: TestClient) -> None:
    key = new_key()
    register(seeded, "w1", key)
    other = {"worker_id": "w1", "public_key_hex": new_key().public_key.hex()}
    assert_problem(seeded.post("/api/workers", json=other, headers=ADMIN), 409, "worker_exists")
    same_key = {"worker_id": "w2", "public_key_hex": key.public_key.hex()}
    body = assert_problem(seeded.post("/api/workers", json=same_key, headers=ADMIN), 409)
    assert body["field"] == "public_key_hex"


@pytest.mark.parametrize(
    "body",
    [
        {"worker_id": "w1", "public_key_hex": "zz" * 32},
        {"worker_id": "w1", "public_key_hex": "ab" * 31},
        {"worker_id": "has space", "public_key_hex": "ab" * 32},
        {"worker_id": "w1"},
    ],
)
def test_malformed_workers_are_refused(seeded: TestClient, body: dict[str, Any]) -> None:
    assert_problem(seeded.post("/api/workers", json=body, headers=ADMIN), 422, "validation_error")


# Admin: jobs


def test_a_job_names_its_paper_by_any_id(seeded: TestClient) -> None:
    job = queue(seeded, "2606.22932", "forge", "full")  # the arXiv id
    assert job["pith_number"] == FORGE
    assert (job["state"], job["attempts"], job["leased_by"], job["record_event_id"]) == (
        "queued",
        0,
        None,
        None,
    )
    assert job["lease_expires_at"] is None and job["created_at"]
    by_prefix = queue(seeded, FORGE.rsplit(":", 1)[1][:8], "forge")
    assert by_prefix["pith_number"] == FORGE and by_prefix["job_id"] != job["job_id"]
    assert seeded.get(f"/api/jobs/{job['job_id']}").json() == job
    listed = seeded.get("/api/jobs").json()
    assert [j["job_id"] for j in listed["jobs"]] == [job["job_id"], by_prefix["job_id"]]
    assert listed["total"] == 2
    assert seeded.get("/api/jobs", params={"state": "done"}).json()["jobs"] == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"pith": FORGE, "claim_id": "nope", "profile": "smoke"}, 422, "unknown_claim"),
        ({"pith": FORGE, "claim_id": "forge", "profile": "a100"}, 422, "unknown_profile"),
        ({"pith": "pith:2026:AAAAAAAA", "claim_id": "forge", "profile": "smoke"}, 404, None),
        ({"pith": FORGE, "claim_id": "forge"}, 422, "validation_error"),
    ],
)
def test_bad_jobs_are_refused(
    seeded: TestClient, connection: Connection, body: dict[str, Any], status: int, code: str | None
) -> None:
    r = seeded.post("/api/jobs", json=body, headers=ADMIN)
    problem = assert_problem(r, status, code)
    if code == "unknown_profile":
        assert "smoke, full" in problem["detail"]
    assert _count(connection, "jobs") == 0


def test_jobs_need_the_admin_token(seeded: TestClient) -> None:
    body = {"pith": FORGE, "claim_id": "forge", "profile": "smoke"}
    assert_problem(seeded.post("/api/jobs", json=body), 401)


@pytest.mark.parametrize("job_id", ["job_0000000000000000", "nope", "job_%00"])
def test_unknown_jobs_are_not_found(seeded: TestClient, job_id: str) -> None:
    assert_problem(seeded.get(f"/api/jobs/{job_id}"), 404, "not_found")


# Worker: authentication


def test_unsigned_and_unknown_requests_are_refused(seeded: TestClient) -> None:
    queue(seeded, FORGE, "forge")
    r = seeded.post("/api/jobs/lease", json={"claims": ["forge"]})
    assert_problem(r, 401, "bad_request_signature")
    stranger = job_client(seeded, new_key("stranger"))
    assert _code(lambda: stranger.lease(["forge"])) == "unknown_worker"
    assert seeded.get("/api/jobs").json()["jobs"][0]["state"] == "queued"


def _signed_post(
    client: TestClient, key: Any, path: str, body: bytes, *, now: datetime, nonce: str
) -> Any:
    headers = sign_request(key, "POST", path, body, now=now, nonce=nonce)
    headers["content-type"] = "application/json"
    return client.post(path, content=body, headers=headers)


def test_a_replayed_request_is_refused(seeded: TestClient, connection: Connection) -> None:
    key = new_key()
    register(seeded, "w1", key)
    queue(seeded, FORGE, "forge")
    queue(seeded, FORGE, "forge")
    body = b'{"claims":["forge"]}'
    now = datetime.now(UTC)
    first = _signed_post(seeded, key, "/api/jobs/lease", body, now=now, nonce="n" * 20)
    assert first.status_code == 200, first.text
    again = _signed_post(seeded, key, "/api/jobs/lease", body, now=now, nonce="n" * 20)
    assert_problem(again, 401, "replayed_request")
    assert [j["state"] for j in seeded.get("/api/jobs").json()["jobs"]] == ["leased", "queued"]
    assert _count(connection, "request_nonces") == 1


def test_a_request_signed_for_another_body_or_path_or_time_is_refused(seeded: TestClient) -> None:
    key = new_key()
    register(seeded, "w1", key)
    queue(seeded, FORGE, "forge")
    now = datetime.now(UTC)
    headers = sign_request(
        key, "POST", "/api/jobs/lease", b'{"claims":["sage"]}', now=now, nonce="a" * 20
    )
    r = seeded.post("/api/jobs/lease", content=b'{"claims":["forge"]}', headers=headers)
    assert "does not verify" in assert_problem(r, 401, "bad_request_signature")["detail"]
    headers = sign_request(key, "POST", "/api/jobs/x/release", b"{}", now=now, nonce="b" * 20)
    r = seeded.post("/api/jobs/lease", content=b"{}", headers=headers)
    assert_problem(r, 401, "bad_request_signature")
    stale = now - timedelta(minutes=10)
    r = _signed_post(
        seeded, key, "/api/jobs/lease", b'{"claims":["forge"]}', now=stale, nonce="c" * 20
    )
    assert "clock" in assert_problem(r, 401, "bad_request_signature")["detail"]
    assert seeded.get("/api/jobs").json()["jobs"][0]["state"] == "queued"


def test_a_malformed_lease_body_is_refused_after_the_signature(seeded: TestClient) -> None:
    key = new_key()
    register(seeded, "w1", key)
    now = datetime.now(UTC)
    r = _signed_post(seeded, key, "/api/jobs/lease", b'{"claims":"forge"}', now=now, nonce="d" * 20)
    assert_problem(r, 422, "validation_error")
    r = _signed_post(seeded, key, "/api/jobs/lease", b"{nope", now=now, nonce="e" * 20)
    assert_problem(r, 400, "malformed_json")


# Worker: leases


def test_leases_go_oldest_first_to_matching_claims(seeded: TestClient) -> None:
    key = new_key()
    register(seeded, "w1", key)
    sage = queue(seeded, SAGE, "sage")
    first = queue(seeded, FORGE, "forge")
    second = queue(seeded, FORGE, "forge")
    worker = job_client(seeded, key)
    leased = worker.lease(["forge", "selftest"])
    assert leased is not None
    job, lease = leased["job"], leased["lease"]
    assert job["job_id"] == first["job_id"]
    assert (job["state"], job["leased_by"], job["attempts"]) == ("leased", "w1", 1)
    assert (
        lease["ttl_s"] == 120
        and lease["lease_id"]
        and lease["expires_at"] == job["lease_expires_at"]
    )
    expires = datetime.fromisoformat(lease["expires_at"])
    assert timedelta(seconds=110) < expires - datetime.now(UTC) <= timedelta(seconds=120)
    assert worker.lease(["forge"])["job"]["job_id"] == second["job_id"]
    assert worker.lease(["forge"]) is None  # 204: nothing left for forge
    assert worker.lease(["no-such-claim"]) is None
    assert seeded.get(f"/api/jobs/{sage['job_id']}").json()["state"] == "queued"


def test_the_lease_ttl_is_a_setting(settings, database, identity) -> None:  # type: ignore[no-untyped-def]
    import_seeds(database, identity)
    with make_client(settings.model_copy(update={"lease_ttl_seconds": 7}), database) as c:
        key = new_key()
        register(c, "w1", key)
        queue(c, FORGE, "forge")
        assert job_client(c, key).lease(["forge"])["lease"]["ttl_s"] == 7


def test_a_heartbeat_renews_only_the_holders_live_lease(
    seeded: TestClient, connection: Connection
) -> None:
    a, b = new_key("a"), new_key("b")
    register(seeded, "a", a)
    register(seeded, "b", b)
    queue(seeded, FORGE, "forge")
    wa, wb = job_client(seeded, a), job_client(seeded, b)
    leased = wa.lease(["forge"])
    job_id, lease_id = leased["job"]["job_id"], leased["lease"]["lease_id"]
    beat = wa.heartbeat(job_id, lease_id)
    assert beat["lease"]["lease_id"] == lease_id
    assert beat["lease"]["expires_at"] >= leased["lease"]["expires_at"]
    assert _code(lambda: wb.heartbeat(job_id, lease_id)) == "lease_not_held"
    assert _code(lambda: wa.heartbeat(job_id, "another-lease-id")) == "lease_not_held"
    assert _status(lambda: wa.heartbeat("job_0123456789abcdef", lease_id)) == 404
    _expire_leases(connection)
    assert _code(lambda: wa.heartbeat(job_id, lease_id)) == "lease_expired"


def test_an_expired_lease_goes_back_to_the_queue_and_to_another_worker(
    seeded: TestClient, connection: Connection
) -> None:
    a, b = new_key("a"), new_key("b")
    register(seeded, "a", a)
    register(seeded, "b", b)
    job = queue(seeded, FORGE, "forge")
    wa, wb = job_client(seeded, a), job_client(seeded, b)
    first = wa.lease(["forge"])
    assert wb.lease(["forge"]) is None  # live: nobody else gets it
    _expire_leases(connection)
    second = wb.lease(["forge"])
    assert second["job"]["job_id"] == job["job_id"]
    assert (second["job"]["leased_by"], second["job"]["attempts"]) == ("b", 2)
    assert second["lease"]["lease_id"] != first["lease"]["lease_id"]
    old = first["lease"]["lease_id"]
    assert _code(lambda: wa.heartbeat(job["job_id"], old)) == "lease_not_held"
    assert _code(lambda: wa.submit_record(job["job_id"], record_event(a, job))) == "lease_not_held"


def test_release_puts_the_job_back(seeded: TestClient) -> None:
    a, b = new_key("a"), new_key("b")
    register(seeded, "a", a)
    register(seeded, "b", b)
    queue(seeded, FORGE, "forge")
    wa, wb = job_client(seeded, a), job_client(seeded, b)
    leased = wa.lease(["forge"])
    job_id, lease_id = leased["job"]["job_id"], leased["lease"]["lease_id"]
    assert _code(lambda: wb.release(job_id, lease_id)) == "lease_not_held"
    released = wa.release(job_id, lease_id)["job"]
    assert (released["state"], released["leased_by"], released["lease_expires_at"]) == (
        "queued",
        None,
        None,
    )
    assert _code(lambda: wa.release(job_id, lease_id)) == "lease_not_held"
    assert wb.lease(["forge"])["job"]["job_id"] == job_id


# Worker: records


def _leased(client: TestClient, key: Any, worker_id: str, pith: str = SAGE) -> tuple[Any, dict]:
    register(client, worker_id, key)
    queue(client, pith, "forge" if pith == FORGE else "sage")
    worker = job_client(client, key)
    leased = worker.lease(["forge", "sage"])
    return worker, leased["job"]


def test_the_record_lands_in_log_state_bundle_and_page(
    seeded: TestClient, connection: Connection, identity: Any
) -> None:
    key = new_key("gpu-1")
    worker, job = _leased(seeded, key, "gpu-1")
    event = record_event(key, job)
    before = _count(connection, "events")
    done = worker.submit_record(job["job_id"], event)
    assert done["event_id"] == event["event_id"]
    assert done["job"]["state"] == "done" and done["job"]["record_event_id"] == event["event_id"]
    assert done["job"]["lease_expires_at"] is None
    assert _count(connection, "events") == before + 1
    suffix = SAGE.rsplit(":", 1)[1]
    state = seeded.get(f"/pith/{suffix}/state.json").json()
    (entry,) = state["current"]["replication_records"]
    assert entry["event_id"] == event["event_id"] and entry["payload"] == event["payload"]
    assert state["state_sha256"] == done["state_sha256"]
    bundle = seeded.get(f"/pith/{suffix}/bundle.json").json()
    assert event in bundle["events"]
    assert merge(bundle["events"], identity.pinned_keys, subject=SAGE) == state
    feed = seeded.get("/api/events", params={"after": 0, "limit": 1000}).json()["events"]
    assert feed[-1] == {"log_index": done["log_index"], "event": event}
    page = seeded.get(f"/pith/{suffix}").text
    for shown in (
        "sage",
        "replicated",
        "speedup_vs_torch",
        "1.41",
        "NVIDIA H100 80GB HBM3",
        "gpu-1",
    ):
        assert shown in page, shown
    assert "pith verify" in page and f"/pith/{suffix}/bundle.json" in page


def test_a_resubmitted_record_is_a_conflict_and_a_second_one_too(
    seeded: TestClient, connection: Connection
) -> None:
    key = new_key("gpu-1")
    worker, job = _leased(seeded, key, "gpu-1")
    event = record_event(key, job)
    worker.submit_record(job["job_id"], event)
    rows = _count(connection, "events")
    with pytest.raises(JobAPIError) as info:
        worker.submit_record(job["job_id"], event)
    assert info.value.status == 409
    assert info.value.problem["event_id"] == event["event_id"]
    assert info.value.problem["job_id"] == job["job_id"]
    later = record_event(key, job, seq=2, prev=event["event_id"])
    assert _code(lambda: worker.submit_record(job["job_id"], later)) == "job_done"
    assert _count(connection, "events") == rows


def _refused(
    seeded: TestClient, connection: Connection, submit: Any, status: int, code: str
) -> dict[str, Any]:
    rows = _count(connection, "events")
    with pytest.raises(JobAPIError) as info:
        submit()
    assert info.value.status == status, info.value.problem
    assert info.value.problem["type"] == f"urn:pith:problem:{code}", info.value.problem
    assert _count(connection, "events") == rows  # nothing stored
    return info.value.problem


def test_a_record_signed_by_an_unregistered_key_is_refused(
    seeded: TestClient, connection: Connection
) -> None:
    key = new_key("gpu-1")
    worker, job = _leased(seeded, key, "gpu-1")
    forged = record_event(new_key("someone-else"), job)
    problem = _refused(
        seeded, connection, lambda: worker.submit_record(job["job_id"], forged), 403, "wrong_signer"
    )
    assert problem["field"] == "signer.public_key_fingerprint"
    stranger = job_client(seeded, new_key("stranger"))  # the request itself unregistered
    own = record_event(stranger.key, job)
    _refused(
        seeded,
        connection,
        lambda: stranger.submit_record(job["job_id"], own),
        401,
        "unknown_worker",
    )
    assert seeded.get(f"/api/jobs/{job['job_id']}").json()["state"] == "leased"


def test_a_record_signed_by_another_registered_worker_is_refused(
    seeded: TestClient, connection: Connection
) -> None:
    a, b = new_key("a"), new_key("b")
    worker_a, job = _leased(seeded, a, "a")
    register(seeded, "b", b)
    worker_b = job_client(seeded, b)
    own_b = record_event(b, job)
    _refused(
        seeded,
        connection,
        lambda: worker_b.submit_record(job["job_id"], own_b),
        409,
        "lease_not_held",
    )
    _refused(
        seeded,
        connection,
        lambda: worker_a.submit_record(job["job_id"], own_b),
        403,
        "wrong_signer",
    )


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"job_id": "job_0123456789abcdef"}, "wrong_job", "payload.job_id"),
        ({"claim_id": "forge"}, "wrong_job", "payload.claim_id"),
        ({"profile": "h100"}, "wrong_job", "payload.profile"),
        ({"subject": FORGE}, "wrong_subject", "subject_pith_number"),
        ({"target": "citation_signature"}, "wrong_target", "target"),
    ],
)
def test_a_record_for_another_job_is_refused(
    seeded: TestClient, connection: Connection, change: dict[str, Any], code: str, field: str
) -> None:
    key = new_key("gpu-1")
    worker, job = _leased(seeded, key, "gpu-1")
    event = record_event(key, job, **change)
    problem = _refused(
        seeded, connection, lambda: worker.submit_record(job["job_id"], event), 422, code
    )
    assert problem["field"] == field
    assert seeded.get(f"/api/jobs/{job['job_id']}").json()["state"] == "leased"


def test_an_invalid_or_expired_record_is_refused(
    seeded: TestClient, connection: Connection
) -> None:
    key = new_key("gpu-1")
    worker, job = _leased(seeded, key, "gpu-1")
    tampered = {**record_event(key, job), "seq": 7}
    _refused(
        seeded,
        connection,
        lambda: worker.submit_record(job["job_id"], tampered),
        422,
        "event_id_mismatch",
    )
    future = record_event(key, job, created_at="2099-01-01T00:00:00Z")
    _refused(
        seeded,
        connection,
        lambda: worker.submit_record(job["job_id"], future),
        422,
        "created_in_future",
    )
    _expire_leases(connection)
    late = record_event(key, job)
    _refused(
        seeded, connection, lambda: worker.submit_record(job["job_id"], late), 409, "lease_expired"
    )


def test_an_error_verdict_is_a_record_like_any_other(seeded: TestClient) -> None:
    key = new_key("gpu-1")
    worker, job = _leased(seeded, key, "gpu-1")
    event = record_event(
        key, job, verdict="error", error="claim exited with status 3", checks=[], figures={}
    )
    assert worker.submit_record(job["job_id"], event)["job"]["state"] == "done"
    page = seeded.get(f"/pith/{SAGE.rsplit(':', 1)[1]}").text
    assert "error" in page and "claim exited with status 3" in page


def test_the_worker_endpoints_are_in_the_openapi_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/jobs/lease",
        "/api/jobs/{job_id}/heartbeat",
        "/api/jobs/{job_id}/release",
        "/api/jobs/{job_id}/record",
    ):
        operation = paths[path]["post"]
        headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
        assert "x-pith-signature" in headers and "x-pith-nonce" in headers
        assert "application/json" in operation["requestBody"]["content"]
    assert {"post", "get"} <= set(paths["/api/workers"]) and {"post", "get"} <= set(
        paths["/api/jobs"]
    )
    assert "get" in paths["/api/jobs/{job_id}"]
