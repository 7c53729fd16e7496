"""The record URLs in-process: record JSON, page, negotiation, names, registering."""

from __future__ import annotations

import hashlib
import html
import json
import re

import pytest
from fastapi.testclient import TestClient

from pith_core.keys import public_key_from_hex
from pith_core.merge import state_sha256
from pith_core.receipt import verify_receipt
from pith_core.verify import verify_document

from .helpers import (
    ADMIN_TOKEN,
    BASE_URL,
    PUBLIC_KEY,
    assert_problem,
    seed_hash,
    seed_json,
    seed_number,
)

FORGE = "GWT7BTE6QQH6QFVV76TWP23RSF"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
PAPER = {
    "arxiv_id": "2611.01234",
    "version": 1,
    "title": "A  Test of\n Registering",
    "abstract": "We register a paper and check every hash.",
    "authors": ["Ada Lovelace", "Alan Turing"],
    "license": "http://creativecommons.org/licenses/by/4.0/",
    "primary_cat": "cs.LG",
    "cross_cats": ["stat.ML", "cs.AI", "cs.LG"],
    "submitted_at": "2026-11-02T10:00:00Z",
}


def test_record_json_has_the_seed_shape_and_links_here(seeded: TestClient) -> None:
    r = seeded.get(f"/pith/{FORGE}.json")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    seed = seed_json("000")
    assert set(seed) <= set(doc)
    for key in (
        "pith_number",
        "short_pith_number",
        "canonical_sha256",
        "source",
        "canonical_record",
        "receipt",
        "paper",
    ):
        assert doc[key] == seed[key], key
    assert doc["aliases"] == [{**a, "created_at": "2026-06-23T03:14:04Z"} for a in seed["aliases"]]
    assert doc["links"]["json"] == f"{BASE_URL}/pith/{FORGE}.json"
    assert doc["agent_actions"]["actions"]["submit_replication"] == (
        f"{BASE_URL}/pith/{FORGE}/action/replication_record"
    )
    assert doc["verification_status"]["pith_receipt"] is True
    assert doc["verification_status"]["replication_records"] == 0
    kind, checks = verify_document(doc, PUBLIC_KEY)
    assert kind == "record" and all(c.passed for c in checks), checks


@pytest.mark.parametrize(
    "name",
    [
        "pith:2026:GWT7BTE6QQH6QFVV76TWP23RSF",
        FORGE,
        "GWT7BTE6",
        "gwt7bte6qqh6",
        "pith:GWT7BTE6",
        "2606.22932",
        "2606.22932v1",
    ],
)
def test_every_name_of_a_record_finds_it(seeded: TestClient, name: str) -> None:
    r = seeded.get(f"/pith/{name}.json")
    assert r.status_code == 200, r.text
    assert r.json()["pith_number"] == seed_number("000")


@pytest.mark.parametrize(
    "name",
    ["AAAAAAAA", "pith:2020:GWT7BTE6QQH6QFVV76TWP23RSF", "9999.99999", "short", "%F0%9F%92%A9"],
)
def test_an_unknown_name_is_a_404_problem(seeded: TestClient, name: str) -> None:
    body = assert_problem(seeded.get(f"/pith/{name}.json"), 404, "not_found")
    assert body["instance"].startswith("/pith/")


def test_accept_chooses_between_page_and_json(seeded: TestClient) -> None:
    page = seeded.get(
        f"/pith/{FORGE}", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    )
    assert page.headers["content-type"].startswith("text/html")
    assert "accept" in {v.strip().lower() for v in page.headers["vary"].split(",")}
    ld = seeded.get(f"/pith/{FORGE}", headers={"Accept": "application/ld+json"})
    assert ld.headers["content-type"] == "application/ld+json"
    assert ld.json()["canonical_record"] == seed_json("000")["canonical_record"]
    plain = seeded.get(f"/pith/{FORGE}", headers={"Accept": "application/json"})
    assert plain.headers["content-type"] == "application/json"
    assert plain.json() == ld.json()


def test_the_page_shows_what_a_person_needs(seeded: TestClient) -> None:
    text = seeded.get("/pith/KQGQ3HUF").text
    for needle in (
        "SAGE: Sign-Adaptive Gradient for Memory-Efficient LLM Optimization",
        "Hyun-Tae Kim, Wooin Lee",
        "pith:KQGQ3HUF",
        "pith:2026:KQGQ3HUFVD5QJXTDZURY2OGC6I",
        "Record completeness",
        "Replication records",
        "\\usepackage{pith}",
        "\\pithnumber{KQGQ3HUFVD5QJXTDZURY2OGC6I}",
        "pith_short_12",
        "10.48550/arxiv.2604.07663",
        "Canonical record JSON",
        seed_hash("002"),
    ):
        assert needle in text, needle
    recipe = html.unescape(re.search(r'<pre id="recipe">(.*?)</pre>', text, re.S).group(1))
    assert recipe.startswith(f"curl -sH 'Accept: application/ld+json' {BASE_URL}/pith/KQGQ3HUF")
    assert recipe.endswith(f"# expect: {seed_hash('002')}")
    ld = re.search(r'<script type="application/ld\+json">(.*?)</script>', text, re.S).group(1)
    article = json.loads(ld)
    assert article["@type"] == "ScholarlyArticle"
    assert [a["name"] for a in article["author"]] == ["Hyun-Tae Kim", "Wooin Lee"]
    assert {
        "propertyID": "pith",
        "value": "pith:2026:KQGQ3HUFVD5QJXTDZURY2OGC6I",
        "@type": "PropertyValue",
    } in article["identifier"]


def test_the_index_lists_the_records(seeded: TestClient) -> None:
    text = seeded.get("/").text
    assert text.count("/pith/") >= 5 and "POET-X" in text
    listing = seeded.get("/api/records", params={"limit": 2}).json()
    assert listing["total"] == 5 and len(listing["records"]) == 2


def test_resolve_aliases(seeded: TestClient) -> None:
    r = seeded.get("/api/pith-number/resolve", params={"arxiv": "2603.05500", "json": "true"})
    assert r.json()["pith_number"] == seed_number("004")
    r = seeded.get(
        "/api/pith-number/resolve", params={"doi": "10.48550/ARXIV.2603.05500", "json": "true"}
    )
    assert r.json()["pith_number"] == seed_number("004")
    r = seeded.get("/api/pith-number/resolve", params={"arxiv": "2603.05500v2", "json": "true"})
    assert r.json()["pith_number"] == seed_number("004")
    r = seeded.get("/api/pith-number/resolve", params={"pith": "5DVZVCUQ"}, follow_redirects=False)
    assert (
        r.status_code == 302
        and r.headers["location"] == f"{BASE_URL}/pith/5DVZVCUQFIXYUCZLARQFQU2Y34"
    )
    assert_problem(seeded.get("/api/pith-number/resolve", params={"arxiv": "2603.05500v9"}), 404)
    assert_problem(seeded.get("/api/pith-number/resolve"), 400, "one_alias_required")
    assert_problem(seeded.get("/api/pith-number/resolve", params={"arxiv": "1", "doi": "2"}), 400)


def test_paper_short_link_redirects(seeded: TestClient) -> None:
    r = seeded.get("/paper/GWT7BTE6", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == f"{BASE_URL}/pith/{FORGE}"


def test_signing_key_and_manifest(seeded: TestClient, identity) -> None:  # type: ignore[no-untyped-def]
    key = seeded.get("/pith-signing-key.json").json()
    assert key["public_key_hex"] == identity.key.public_key.hex()
    assert key["fingerprint_sha256_hex"] == identity.fingerprint
    manifest = seeded.get("/pith-mirrors.json").json()
    assert manifest["manifest_type"] == "pith_mirror_manifest"
    (mirror,) = manifest["mirrors"]
    assert mirror["bundle_pattern"] == f"{BASE_URL}/pith/{{suffix}}/bundle.json"
    assert mirror["public_key"]["public_key_hex"] == key["public_key_hex"]


class TestRegister:
    def test_needs_the_admin_token(self, client: TestClient) -> None:
        assert_problem(client.post("/api/records", json=PAPER), 401, "admin_token_required")
        assert_problem(
            client.post("/api/records", json=PAPER, headers={"Authorization": "Bearer nope"}),
            403,
            "admin_token_invalid",
        )
        assert client.get("/api/records").json()["total"] == 0

    def test_is_off_without_a_token(self, settings, database) -> None:  # type: ignore[no-untyped-def]
        from .conftest import make_client

        with make_client(settings.model_copy(update={"admin_token": None}), database) as c:
            assert_problem(c.post("/api/records", json=PAPER, headers=ADMIN), 403, "admin_disabled")

    def test_registers_once_and_signs_receipt_and_events(self, client: TestClient) -> None:
        r = client.post("/api/records", json=PAPER, headers=ADMIN)
        assert r.status_code == 201, r.text
        doc = r.json()
        meta = doc["canonical_record"]["metadata"]
        assert meta["cross_cats_sorted"] == ["cs.AI", "stat.ML"]
        assert meta["title_canon_sha256"] == hashlib.sha256(b"a test of registering").hexdigest()
        assert doc["paper"]["authors_text"] == "Ada Lovelace, Alan Turing"
        key = public_key_from_hex(client.get("/pith-signing-key.json").json()["public_key_hex"])
        verify_receipt(doc["receipt"], doc["canonical_sha256"], key)
        _kind, checks = verify_document(doc, key)
        assert all(c.passed for c in checks), checks

        suffix = doc["pith_number"].rsplit(":", 1)[1]
        state = client.get(f"/pith/{suffix}/state.json").json()
        assert state["state_sha256"] == state_sha256(state)
        events = client.get(f"/api/pith-number/{suffix}/events.json").json()["events"]
        assert [(e["target"], e["seq"]) for e in events] == [("record", 1), ("graph", 2)]
        assert events[0]["prev"] is None and events[1]["prev"] == events[0]["event_id"]
        assert {e["event_id"] for e in events} == set(state["applied_event_ids"])
        assert [a["alias_kind"] for a in doc["aliases"]] == [
            "arxiv",
            "arxiv_version",
            "doi",
            "pith_short_12",
            "pith_short_16",
            "pith_short_8",
        ]

        again = client.post("/api/records", json=PAPER, headers=ADMIN)
        assert again.status_code == 200
        assert again.json()["pith_number"] == doc["pith_number"]
        assert again.json()["receipt"] == doc["receipt"]
        assert client.get("/api/records").json()["total"] == 1
        assert len(client.get(f"/api/pith-number/{suffix}/events.json").json()["events"]) == 2

    def test_same_version_with_other_metadata_conflicts(self, client: TestClient) -> None:
        assert client.post("/api/records", json=PAPER, headers=ADMIN).status_code == 201
        changed = {**PAPER, "title": "Another title"}
        body = assert_problem(
            client.post("/api/records", json=changed, headers=ADMIN), 409, "source_conflict"
        )
        assert body["pith_number"].startswith("pith:2026:")
        assert client.get("/api/records").json()["total"] == 1

    def test_a_new_version_takes_the_versionless_aliases(self, client: TestClient) -> None:
        v1 = client.post("/api/records", json=PAPER, headers=ADMIN).json()
        v2 = client.post("/api/records", json={**PAPER, "version": 2}, headers=ADMIN).json()
        assert v1["pith_number"] != v2["pith_number"]
        resolve = client.get(
            "/api/pith-number/resolve", params={"arxiv": "2611.01234", "json": "1"}
        )
        assert resolve.json()["pith_number"] == v2["pith_number"]
        resolve = client.get(
            "/api/pith-number/resolve", params={"arxiv": "2611.01234v1", "json": "1"}
        )
        assert resolve.json()["pith_number"] == v1["pith_number"]

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"arxiv_id": "not-an-id"}, None),
            ({"submitted_at": "2026-11-02 10:00"}, None),
            ({"primary_cat": "CS LG"}, None),
            ({"version": 0}, "version"),
            ({"title": ""}, "title"),
            ({"surprise": 1}, "surprise"),
        ],
    )
    def test_bad_metadata_is_a_422_naming_it(self, client: TestClient, change, field) -> None:  # type: ignore[no-untyped-def]
        body = assert_problem(
            client.post("/api/records", json={**PAPER, **change}, headers=ADMIN), 422
        )
        if field:
            assert body["field"] == field
        else:
            assert body["type"] == "urn:pith:problem:bad_metadata"
        assert client.get("/api/records").json()["total"] == 0


def test_admin_import_endpoint(client: TestClient) -> None:
    from .helpers import SEED_FILES

    docs = [p.read_text() for p in SEED_FILES]
    r = client.post("/api/import", json={"documents": docs}, headers=ADMIN)
    assert r.status_code == 201, r.text
    assert [x["status"] for x in r.json()["records"]] == ["imported"] * 5
    again = client.post("/api/import", json={"documents": docs[:1]}, headers=ADMIN)
    assert again.status_code == 200 and again.json()["records"][0]["status"] == "present"
    bad = docs[4].replace("LIEP7avz9Mrcc6FI", "LIEP7avz9Mrcc6FJ")
    body = assert_problem(
        client.post("/api/import", json={"documents": [bad]}, headers=ADMIN), 422, "import_refused"
    )
    assert "receipt" in body["detail"]
    assert_problem(client.post("/api/import", json={"documents": docs}), 401)


def test_the_canonical_record_has_an_immutable_url_of_its_own(seeded: TestClient) -> None:
    r = seeded.get(f"/pith/{FORGE}/canonical.json")
    assert r.status_code == 200, r.text
    # its bytes are what the Pith number names: anyone's sha256sum recomputes the hash
    assert hashlib.sha256(r.content).hexdigest() == seed_hash("000")
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    full = seeded.get(f"/pith/{seed_number('000')}/canonical.json")
    assert full.content == r.content and "immutable" in full.headers["cache-control"]
    again = seeded.get(
        f"/pith/{FORGE}/canonical.json", headers={"if-none-match": r.headers["etag"]}
    )
    assert again.status_code == 304 and "immutable" in again.headers["cache-control"]
    # a prefix may come to name two records; the record JSON carries statuses that change
    prefix = seeded.get(f"/pith/{FORGE[:10]}/canonical.json")
    assert prefix.content == r.content and prefix.headers["cache-control"] == "public, no-cache"
    assert seeded.get(f"/pith/{FORGE}.json").headers["cache-control"] == "public, no-cache"
    assert_problem(seeded.get("/pith/AAAAAAAAAAAAAAAAAAAAAAAAAA/canonical.json"), 404)
