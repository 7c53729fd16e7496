"""Issue 14's server errors from malformed input, each now a 4xx problem document (on SQLite and
on PostgreSQL), plus a fuzz corpus of hostile event bodies through both write URLs."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, text

from .conftest import make_client
from .helpers import assert_problem, new_key, seed_number, signed_event

FORGE = seed_number("000")
SUFFIX = FORGE.rsplit(":", 1)[1]
ACTION = f"/pith/{SUFFIX}/action/replication_record"


@pytest.fixture()
def strict(seeded: TestClient, settings: Any, database: Any) -> Any:
    """The seeded service answering bugs as 500s (not raising them into the test)."""
    with TestClient(make_client(settings, database).app, raise_server_exceptions=False) as c:
        yield c


def _post_raw(client: TestClient, url: str, body: str | bytes) -> Any:
    return client.post(url, content=body, headers={"Content-Type": "application/json"})


def _events(connection: Connection) -> int:
    return int(connection.execute(text("SELECT count(*) FROM events")).scalar() or 0)


@pytest.mark.parametrize("after", ["%C2%B2", "%D9%A1%D9%A2", "-1", "1e3", "%00", "x" * 64])
def test_a_bad_feed_cursor_is_a_400(strict: TestClient, after: str) -> None:
    assert_problem(strict.get(f"/api/events?after={after}"), 400, "bad_cursor")


@pytest.mark.parametrize("url", ["/api/events", ACTION])
def test_a_4301_digit_integer_is_malformed_json(strict: TestClient, url: str) -> None:
    event = signed_event(new_key(), FORGE)
    body = json.dumps(event).replace('"seq": 1', '"seq": ' + "9" * 4301)
    assert '"seq": 999' in body
    assert_problem(_post_raw(strict, url, f"[{body}]" if url == "/api/events" else body), 400)


@pytest.mark.parametrize(
    ("path", "value", "code"),
    [
        (("target",), ["replication"], "bad_shape"),
        (("event_type",), {"x": 1}, "bad_shape"),
        (("signer", "public_key_b64"), {"not": "a string"}, "bad_signer"),
        (("signer", "public_key_b64"), ["a"], "bad_signer"),
        (("signer",), "me", "bad_signer"),
        (("seq",), 2**80, "bad_shape"),
        (("payload",), [1], "bad_shape"),
    ],
)
def test_fields_of_the_wrong_type_are_422(
    strict: TestClient, connection: Connection, path: tuple[str, ...], value: Any, code: str
) -> None:
    event = signed_event(new_key(), FORGE)
    holder = event
    for part in path[:-1]:
        holder = holder[part]
    holder[path[-1]] = value
    before = _events(connection)
    assert_problem(strict.post(ACTION, json=event), 422, code)
    body = assert_problem(strict.post("/api/events", json=[event]), 422, "invalid_events")
    assert body["errors"][0]["reason"] == code
    assert _events(connection) == before


@pytest.mark.parametrize("batch", [[1, "x", None, []], [[{}]], {"events": {"a": 1}}, "text", 7])
def test_batches_of_non_events_are_4xx(strict: TestClient, batch: Any) -> None:
    r = strict.post("/api/events", json=batch)
    assert 400 <= r.status_code < 500 and r.headers["content-type"].startswith(
        "application/problem"
    )


@pytest.mark.parametrize(
    "url",
    [
        "/pith/%00AAAAAAAA",
        "/pith/%00AAAAAAAA.json",
        "/pith/%00AAAAAAAA/state.json",
        "/paper/%00",
        "/api/pith-number/resolve?arxiv=%00&json=true",
        "/api/pith-number/resolve?doi=10.1%00&json=true",
        "/pith/" + "A" * 400,
        "/api/pith-number/" + "%F0%9F%98%80" * 50 + "/events.json",
    ],
)
def test_names_no_record_could_have_are_404(strict: TestClient, url: str) -> None:
    assert_problem(strict.get(url, headers={"Accept": "application/json"}), 404)


def test_nesting_and_bad_numbers_are_4xx(strict: TestClient) -> None:
    for body in ("[" * 100_000, '{"a": 1e999}', "\ufeff{}", b"\xff\xfe", '{"a":1,"a":2}'):
        r = _post_raw(strict, ACTION, body)
        assert 400 <= r.status_code < 500, (body[:10], r.status_code)


hostile_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)  # JSON has no inf; raw bodies test 1e999
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELDS = [
    ("target",),
    ("event_type",),
    ("subject_pith_number",),
    ("created_at",),
    ("seq",),
    ("prev",),
    ("payload",),
    ("payload", "verdict"),
    ("payload", "checks"),
    ("signer",),
    ("signer", "public_key_b64"),
    ("signer", "public_key_fingerprint"),
    ("signer", "key_id"),
    ("event_id",),
    ("signature_b64",),
]
BASE_EVENT = signed_event(new_key("fuzz"), FORGE)


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.sampled_from(FIELDS), hostile_values)
def test_fuzzed_events_get_4xx_through_both_write_urls(
    strict: TestClient, path: tuple[str, ...], value: Any
) -> None:
    event = copy.deepcopy(BASE_EVENT)
    holder = event
    for part in path[:-1]:
        holder = holder[part]
    holder[path[-1]] = value
    for r in (strict.post(ACTION, json=event), strict.post("/api/events", json=[event])):
        assert r.status_code < 500, r.text
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith("application/problem+json")
