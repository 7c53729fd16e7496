"""Identity and interop: the registry's name comes from settings or its key (never its port),
the manifest states its real scheme, the record's schema_url resolves here, graph sections hash
as the public registry's do, and an imported page keeps its references and formal links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.records.snapshots import graph_snapshot
from app.registry.service import load_identity
from app.settings import Settings

from .helpers import ADMIN_TOKEN, BASE_URL, seed_json, seed_number

# The public registry's values (issue 16, and seed 000's own graph snapshot).
EMPTY_SECTION = "258153158e38e3291e3d48162225fcdb2d5a3ed65a07baac614ab91432fd4f57"
EMPTY_INTEGRITY = "c28c3603d3b5d939e8dc4c7e95fa8dfce3d595e45f758748cecf8e644a296938"
SECTIONS = ("claims", "references", "author_claims", "formal_canon")
PAPER = {
    "arxiv_id": "2611.04321",
    "version": 1,
    "title": "Interop of Graph Sections",
    "abstract": "Sections hash as the public registry's.",
    "authors": ["Ada Lovelace"],
    "license": "",
    "primary_cat": "cs.LG",
    "cross_cats": [],
    "submitted_at": "2026-11-02T10:00:00Z",
}


def test_empty_sections_hash_as_the_public_registry() -> None:
    seed = seed_json("000")["graph_snapshot"]
    assert {s: seed[s]["snapshot_sha256"] for s in SECTIONS} == dict.fromkeys(
        SECTIONS, EMPTY_SECTION
    )
    assert seed["integrity"]["snapshot_sha256"] == EMPTY_INTEGRITY
    ours = graph_snapshot(seed["paper"], seed["source"])
    for section in SECTIONS:
        assert ours[section]["snapshot_sha256"] == EMPTY_SECTION, section
    assert ours["integrity"]["snapshot_sha256"] == EMPTY_INTEGRITY


def test_a_registered_paper_has_the_public_section_hashes(client: TestClient) -> None:
    doc = client.post(
        "/api/records", json=PAPER, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ).json()
    suffix = doc["pith_number"].rsplit(":", 1)[1]
    graph = client.get(f"/api/pith-number/{suffix}/graph.json").json()
    snapshot = graph.get("graph_snapshot", graph)
    for section in SECTIONS:
        assert snapshot[section]["snapshot_sha256"] == EMPTY_SECTION
    assert snapshot["integrity"]["snapshot_sha256"] == EMPTY_INTEGRITY


def test_the_registry_name_does_not_depend_on_its_port(tmp_path: Path) -> None:
    key = tmp_path / "key.json"
    a = load_identity(Settings(key_file=key, port=8000))
    b = load_identity(Settings(key_file=key, port=9000, public_url="https://other.example"))
    assert a.signer["signer_id"] == b.signer["signer_id"]
    assert "8000" not in a.signer["signer_id"] and "other" not in a.signer["signer_id"]
    named = load_identity(Settings(key_file=key, registry_id="registry.example.org"))
    assert named.signer["signer_id"] == "registry.example.org"


def test_registry_id_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PITH_REGISTRY_ID", "pith.example.net")
    assert load_identity(Settings(key_file=tmp_path / "k.json")).signer["signer_id"] == (
        "pith.example.net"
    )


def test_manifest_states_the_real_scheme(seeded: TestClient) -> None:
    (mirror,) = seeded.get("/pith-mirrors.json").json()["mirrors"]
    assert mirror["base_url"] == BASE_URL
    assert mirror["mirror_type"] == BASE_URL.split("://")[0]


def test_schema_url_resolves_here_and_the_record_fits_it(seeded: TestClient) -> None:
    doc = seeded.get(f"/pith/{seed_number('000').rsplit(':', 1)[1]}.json").json()
    assert doc["schema_url"].startswith(BASE_URL + "/")
    r = seeded.get(doc["schema_url"].removeprefix(BASE_URL))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/schema+json")
    schema = r.json()
    assert schema["$id"] == doc["schema_url"]
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(doc, schema)
    jsonschema.validate(seed_json("000"), schema)  # the public registry's record fits it too
    broken = {**doc, "canonical_sha256": "not a hash"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_imported_page_keeps_references_and_formal_links(seeded: TestClient) -> None:
    page_seed = (
        Path(__file__).resolve().parents[2] / "seeds" / "002_208f6f75bdc33b35.txt"
    ).read_text()
    number = re.search(r"^(pith:\d{4}:[A-Z2-7]{26})$", page_seed, re.M).group(1)
    suffix = number.rsplit(":", 1)[1]
    doc = seeded.get(f"/pith/{suffix}.json").json()
    status = doc["verification_status"]
    assert "refs resolved" in page_seed and status["references_resolved"] is True
    assert "1 machine-checked theorem link" in page_seed and status["formal_links_present"] is True
    refs = doc["graph_snapshot"]["references"]
    assert refs["count"] == 3 and refs["resolved_work"] == 3 and refs["internal_anchors"] == 1
    assert refs["sample"][0]["text"].startswith("Layer Normalization")
    page = seeded.get(f"/pith/{suffix}").text
    assert "refs resolved" in page and "Layer Normalization" in page
    assert "1 machine-checked theorem link" in page
