"""events.json and bundle.json (SQLite and PostgreSQL): at a fixed tree size (`log_size`) the
same bytes forever, with immutable Cache-Control; paged and bounded in bytes with a cursor that
pins the tree size; the plain answer for a small record unchanged."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from app.core.http import IMMUTABLE
from pith_core.logcheck import check_events_in_log
from pith_core.merge import merge
from pith_core.verify import verify_document

from .conftest import make_client
from .helpers import PUBLIC_KEY, assert_problem, new_key, seed_number, signed_event

FORGE = seed_number("000")
SUFFIX = FORGE.rsplit(":", 1)[1]
BUNDLE = f"/pith/{SUFFIX}/bundle.json"
EVENTS = f"/api/pith-number/{SUFFIX}/events.json"


def _key(client: TestClient) -> bytes:
    return bytes.fromhex(client.get("/pith-signing-key.json").json()["public_key_hex"])


def _tree_size(client: TestClient) -> int:
    return int(client.get("/log").json()["tree_size"])


def _replications(n: int, *, pad: int = 0, key_id: str = "pager") -> list[dict[str, Any]]:
    key = new_key(key_id)
    return [
        signed_event(
            key,
            FORGE,
            seq=i + 1,
            payload={"claim_id": "c", "verdict": "inconclusive", "pad": "x" * pad},
        )
        for i in range(n)
    ]


def _all_pages(client: TestClient, path: str, **params: Any) -> list[dict[str, Any]]:
    pages = [client.get(path, params=params).json()]
    while pages[-1].get("next"):
        r = client.get(path, params={**params, "after": pages[-1]["next"]})
        assert r.status_code == 200, r.text
        pages.append(r.json())
    return pages


def test_a_bundle_at_a_log_size_never_changes_as_events_land(seeded: TestClient, identity) -> None:  # type: ignore[no-untyped-def]
    assert seeded.post("/api/events", json=_replications(2)).status_code == 201
    size = _tree_size(seeded)
    fixed = seeded.get(BUNDLE, params={"log_size": size})
    assert fixed.status_code == 200, fixed.text
    assert fixed.headers["cache-control"] == IMMUTABLE
    # at the current size it is the current bundle
    assert fixed.json() == seeded.get(BUNDLE).json()
    keys = [_key(seeded), PUBLIC_KEY]
    _, checks = verify_document(fixed.json(), keys)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]

    later = signed_event(new_key("later"), FORGE)
    assert seeded.post(f"/pith/{SUFFIX}/action/replication_record", json=later).status_code == 201
    again = seeded.get(BUNDLE, params={"log_size": size})
    assert again.content == fixed.content
    assert again.headers["etag"] == fixed.headers["etag"]
    # the bundle of today has the new event, the one at `size` does not
    now = seeded.get(BUNDLE).json()
    assert later["event_id"] in {e["event_id"] for e in now["events"]}
    assert later["event_id"] not in {e["event_id"] for e in again.json()["events"]}
    assert now["state_sha256"] != again.json()["state_sha256"]
    # its state hash is the merge of its own events, recomputed offline
    doc = again.json()
    offline = merge(doc["events"], [identity.key.public_key], subject=FORGE)
    assert offline["state_sha256"] == doc["state_sha256"]
    assert doc["log"]["tree_size"] == size
    assert all(e["leaf_index"] < size for e in doc["log"]["entries"].values())


def test_events_json_at_a_log_size_is_the_events_before_it(seeded: TestClient) -> None:
    events = _replications(3)
    assert seeded.post("/api/events", json=events[:1]).status_code == 201
    size = _tree_size(seeded)
    fixed = seeded.get(EVENTS, params={"log_size": size})
    assert fixed.headers["cache-control"] == IMMUTABLE
    assert seeded.post("/api/events", json=events[1:]).status_code == 201
    again = seeded.get(EVENTS, params={"log_size": size})
    assert again.content == fixed.content
    ids = [e["event_id"] for e in again.json()["events"]]
    assert events[0]["event_id"] in ids and events[1]["event_id"] not in ids
    now = [e["event_id"] for e in seeded.get(EVENTS).json()["events"]]
    assert now[: len(ids)] == ids and now[len(ids) :] == [e["event_id"] for e in events[1:]]
    doc = again.json()
    check_events_in_log(doc["events"], doc["log"], [_key(seeded), PUBLIC_KEY])


def test_log_size_beyond_the_log_or_before_the_record_is_a_problem(seeded: TestClient) -> None:
    size = _tree_size(seeded)
    problem = assert_problem(
        seeded.get(BUNDLE, params={"log_size": size + 1}), 400, "log_size_beyond_tree"
    )
    assert problem["field"] == "log_size" and problem["tree_size"] == size
    assert_problem(seeded.get(EVENTS, params={"log_size": 0}), 404, "not_in_log")
    assert_problem(seeded.get(BUNDLE, params={"log_size": -1}), 422)
    assert_problem(seeded.get(BUNDLE, params={"after": "not-a-cursor"}), 400, "bad_cursor")
    assert_problem(seeded.get(EVENTS, params={"limit": 1001}), 422)


def test_a_name_that_may_change_meaning_is_revalidated_not_immutable(seeded: TestClient) -> None:
    size = _tree_size(seeded)
    by_prefix = seeded.get(f"/pith/{SUFFIX[:10]}/bundle.json", params={"log_size": size})
    by_suffix = seeded.get(BUNDLE, params={"log_size": size})
    assert by_prefix.content == by_suffix.content
    assert by_prefix.headers["cache-control"] == "public, no-cache"
    by_number = seeded.get(f"/pith/{FORGE}/bundle.json", params={"log_size": size})
    assert by_number.headers["cache-control"] == IMMUTABLE
    # the plain answer follows the log: revalidated by its ETag
    assert seeded.get(BUNDLE).headers["cache-control"] == "public, no-cache"


def test_a_small_records_plain_answer_has_no_paging_fields(seeded: TestClient) -> None:
    events = seeded.get(EVENTS).json()
    bundle = seeded.get(BUNDLE).json()
    assert "next" not in events and "events_total" not in events
    assert "next" not in bundle and "events_total" not in bundle
    assert events["event_count"] == len(events["events"]) == len(bundle["events"])


def test_events_and_bundles_page_by_bytes_and_the_pages_add_up(
    seeded: TestClient, settings: Any, database: Any
) -> None:
    sent = _replications(9, pad=20_000)
    assert seeded.post("/api/events", json=sent).status_code == 201
    whole_events = seeded.get(EVENTS).json()["events"]
    whole_bundle = seeded.get(BUNDLE).json()
    small = settings.model_copy(update={"max_listing_bytes": 64 * 1024})
    keys = [_key(seeded), PUBLIC_KEY]
    with make_client(small, database) as client:
        first = client.get(EVENTS)
        assert len(first.content) <= 64 * 1024 + 30_000  # the bound, or one event past it
        assert first.headers["cache-control"] == "public, no-cache"
        pages = _all_pages(client, EVENTS)
        assert len(pages) >= 3 and pages[-1]["next"] is None
        assert {p["events_total"] for p in pages} == {len(whole_events)}
        assert [e for p in pages for e in p["events"]] == whole_events
        for p in pages:  # each page proves its events against one checkpoint
            check_events_in_log(p["events"], p["log"], keys)
        assert (
            client.get(EVENTS, params={"after": pages[0]["next"]}).headers["cache-control"]
            == IMMUTABLE
        )

        bundles = _all_pages(client, BUNDLE)
        assert len(bundles) >= 3
        # a bundle lists its events by id (equal sets, equal bytes): a page sorts its own
        union = sorted((e for p in bundles for e in p["events"]), key=lambda e: e["event_id"])
        assert union == whole_bundle["events"]
        assert {p["state_sha256"] for p in bundles} == {whole_bundle["state_sha256"]}
        assert {p["canonical_record"]["metadata"]["submitted_at"] for p in bundles} == {
            whole_bundle["canonical_record"]["metadata"]["submitted_at"]
        }


def test_a_cursor_pins_the_tree_size_of_its_first_page(seeded: TestClient) -> None:
    sent = _replications(4)
    assert seeded.post("/api/events", json=sent).status_code == 201
    first = seeded.get(EVENTS, params={"limit": 2}).json()
    assert first["next"] and len(first["events"]) == 2
    assert seeded.post("/api/events", json=_replications(2, key_id="late")).status_code == 201
    pages = [first, *_all_pages(seeded, EVENTS, limit=2, after=first["next"])]
    seen = [e["event_id"] for p in pages for e in p["events"]]
    assert seen[-4:] == [e["event_id"] for e in sent]  # nothing that landed after the first page
    assert {p["log"]["tree_size"] for p in pages} == {first["log"]["tree_size"]}
    mismatch = seeded.get(
        EVENTS, params={"after": first["next"], "log_size": first["log"]["tree_size"] - 1}
    )
    assert_problem(mismatch, 400, "bad_cursor")
