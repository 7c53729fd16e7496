"""The trust policy: every valid statement is listed, only evidence moves a status (RFC 3161
tokens from a configured TSA, configured storage attesters, registry-bound author claims,
registered workers' job records); payload schemas; the predate margin; honest badges."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from app.settings import Settings
from app.storage.engine import Database
from app.trust.payloads import PAYLOAD_MODELS

from ..replication.jobs_support import job_client, queue, record_event, register
from .conftest import make_client
from .helpers import (
    ADMIN_TOKEN,
    VALID_PAYLOADS,
    assert_problem,
    new_key,
    seed_hash,
    seed_number,
    signed_event,
)
from .tsa import TestTSA

FORGE = seed_number("000")
SAGE = seed_number("001")
FORGE_SUFFIX = FORGE.rsplit(":", 1)[1]
SAGE_SUFFIX = SAGE.rsplit(":", 1)[1]
FORGE_HASH = seed_hash("000")


@pytest.fixture(scope="module")
def tsa() -> TestTSA:
    return TestTSA("rsa", "Pith Test TSA")


@pytest.fixture()
def attester() -> Any:
    return new_key("archive-attester")


@pytest.fixture()
def trusting(
    settings: Settings, database: Database, tsa: TestTSA, attester: Any, tmp_path: Path
) -> Iterator[TestClient]:
    """The seeded service with a configured TSA and storage attester."""
    from app.registry.service import load_identity

    from .helpers import import_seeds

    pem = tmp_path / "tsa.pem"
    pem.write_bytes(tsa.pem)
    trusted = settings.model_copy(
        update={
            "trust_tsa_certificates": [pem],
            "trust_storage_attester_keys": [attester.public_key.hex()],
        }
    )
    import_seeds(database, load_identity(trusted))
    with make_client(trusted, database) as client:
        yield client


def _post(client: TestClient, action: str, event: Any, suffix: str = FORGE_SUFFIX) -> Any:
    return client.post(f"/pith/{suffix}/action/{action}", json=event)


def _status(client: TestClient, suffix: str = FORGE_SUFFIX) -> dict[str, Any]:
    return client.get(f"/pith/{suffix}.json").json()


@pytest.mark.parametrize(
    ("action", "target"),
    [
        ("timestamp_anchor", "timestamp_anchor"),
        ("storage_attestation", "storage_attestation"),
        ("author_attestation", "author_attestation"),
        ("citation_signature", "citation_signature"),
        ("replication_record", "replication"),
    ],
)
def test_an_empty_payload_is_refused_naming_the_missing_field(
    seeded: TestClient, action: str, target: str
) -> None:
    event = signed_event(new_key(), FORGE, target=target, payload={})
    body = assert_problem(_post(seeded, action, event), 422, "bad_payload")
    assert body["field"].startswith("payload")
    if target != "replication":  # (pith_core's own check of a replication payload comes first)
        assert f"/schemas/{target}.json" in body["detail"]
    assert _status(seeded)["events_total"] == 0


def test_malformed_payloads_are_refused(seeded: TestClient) -> None:
    key = new_key()
    for seq, (target, action, payload, field) in enumerate(
        [
            ("storage_attestation", "storage_attestation", {"uri": "javascript:alert(1)"}, "uri"),
            ("timestamp_anchor", "timestamp_anchor", {"method": "rfc3161"}, "canonical_sha256"),
            ("author_attestation", "author_attestation", {"author": ["A"]}, "author"),
            (
                "replication",
                "replication_record",
                {"claim_id": "x", "verdict": "replicated", "checks": [{"name": "n"}]},
                "checks.0.measured",
            ),
        ],
        start=1,
    ):
        event = signed_event(key, FORGE, target=target, seq=seq, payload=payload)
        body = assert_problem(_post(seeded, action, event), 422, "bad_payload")
        assert body["field"] == f"payload.{field}"


def test_the_schemas_are_published_and_agree_with_the_service(seeded: TestClient) -> None:
    index = seeded.get("/schemas/").json()["schemas"]
    assert set(index) == set(PAYLOAD_MODELS)
    for target in PAYLOAD_MODELS:
        r = seeded.get(f"/schemas/{target}.json")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/")
        validator = jsonschema_rs.validator_for(r.json())
        assert not validator.is_valid({}), target  # what the service refuses, the schema does
        valid = VALID_PAYLOADS.get(target) or {"claim_id": "c", "verdict": "not_replicated"}
        assert validator.is_valid(valid), target
    assert_problem(seeded.get("/schemas/nope.json"), 404)
    assert "predate_margin_seconds" in seeded.get("/trust-policy.json").json()


def test_forged_trust_is_listed_but_moves_nothing(seeded: TestClient) -> None:
    """A throwaway key's anchor, storage and strong author claims: listed, nothing green."""
    key = new_key("throwaway")
    token = base64.b64encode(TestTSA("rsa", "Unconfigured TSA").token(FORGE_HASH)).decode()
    for seq, (action, target, payload) in enumerate(
        [
            (
                "timestamp_anchor",
                "timestamp_anchor",
                {"method": "rfc3161", "canonical_sha256": FORGE_HASH, "token_b64": token},
            ),
            ("storage_attestation", "storage_attestation", {"uri": "https://x.example/p.pdf"}),
            ("author_attestation", "author_attestation", {"author": "Me", "strength": "strong"}),
        ],
        start=1,
    ):
        event = signed_event(key, FORGE, target=target, seq=seq, payload=payload)
        assert _post(seeded, action, event).status_code == 201
    doc = _status(seeded)
    status = doc["verification_status"]
    assert status["externally_anchored"] is False
    assert status["storage_verified"] is False
    assert status["author_attested"] is False
    assert (status["weak_author_claims"], status["strong_author_claims"]) == (1, 0)
    assert doc["trust"]["anchors"]["listed"] == 1 and doc["trust"]["storage"]["listed"] == 1
    page = seeded.get(f"/pith/{FORGE_SUFFIX}").text
    assert "not anchored (1 unverified)" in page and "1 unverified author claim" in page


def test_an_rfc3161_token_from_the_configured_tsa_anchors(
    trusting: TestClient, tsa: TestTSA
) -> None:
    key = new_key("anchorer")

    def anchor(seq: int, token: bytes, digest: str = FORGE_HASH) -> None:
        payload = {
            "method": "rfc3161",
            "canonical_sha256": digest,
            "token_b64": base64.b64encode(token).decode(),
        }
        event = signed_event(key, FORGE, target="timestamp_anchor", seq=seq, payload=payload)
        assert _post(trusting, "timestamp_anchor", event).status_code == 201

    other = hashlib.sha256(b"another record").hexdigest()
    anchor(1, tsa.token(other), other)  # a real token, but of another hash
    anchor(2, TestTSA("rsa", "Rogue TSA").token(FORGE_HASH))  # the right hash, wrong TSA
    assert _status(trusting)["verification_status"]["externally_anchored"] is False
    anchor(3, tsa.token(FORGE_HASH))
    doc = _status(trusting)
    assert doc["verification_status"]["externally_anchored"] is True
    anchors = doc["trust"]["anchors"]
    assert (anchors["listed"], anchors["verified"]) == (3, 1)
    assert "Pith Test TSA" in anchors["verified_by"][0]["how"]
    assert "anchored (RFC 3161)" in trusting.get(f"/pith/{FORGE_SUFFIX}").text


def test_storage_counts_only_from_a_configured_attester(
    trusting: TestClient, attester: Any
) -> None:
    payload = {"uri": "https://archive.example/forge.pdf"}
    stranger = signed_event(new_key(), FORGE, target="storage_attestation", payload=payload)
    assert _post(trusting, "storage_attestation", stranger).status_code == 201
    assert _status(trusting)["verification_status"]["storage_verified"] is False
    attested = signed_event(attester, FORGE, target="storage_attestation", payload=payload)
    assert _post(trusting, "storage_attestation", attested).status_code == 201
    doc = _status(trusting)
    assert doc["verification_status"]["storage_verified"] is True
    assert doc["trust"]["storage"]["attested_by"] == [attester.fingerprint]


def test_an_event_may_not_predate_the_paper(seeded: TestClient) -> None:
    """FORGE was submitted in 2026; a 1990 storage attestation is refused, by action and batch."""
    payload = {"uri": "https://archive.example/forge.pdf"}
    old = signed_event(
        new_key(),
        FORGE,
        target="storage_attestation",
        created_at="1990-01-01T00:00:00Z",
        payload=payload,
    )
    body = assert_problem(_post(seeded, "storage_attestation", old), 422, "predates_record")
    assert body["field"] == "created_at"
    assert_problem(seeded.post("/api/events", json=[old]), 422, "predates_record")
    assert _status(seeded)["events_total"] == 0


def test_replication_records_say_where_they_came_from(seeded: TestClient) -> None:
    """A stranger's `replicated` is self-reported; a job's `not_replicated` is never a success."""
    forged = signed_event(
        new_key("official-looking"),
        SAGE,
        signer_id="pith-gpu-worker-h100",
        payload={"claim_id": "sage", "verdict": "replicated", "figures": {"speedup": "9.9"}},
    )
    assert _post(seeded, "replication_record", forged, SAGE_SUFFIX).status_code == 201
    status = _status(seeded, SAGE_SUFFIX)["verification_status"]
    assert status["replication_status"] == "self_reported_only"
    assert status["replication_records"] == 1
    page = seeded.get(f"/pith/{SAGE_SUFFIX}").text
    assert "1 self-reported replication record" in page and "self-reported</span>" in page

    key = new_key("gpu-1")
    register(seeded, "gpu-1", key)
    queue(seeded, SAGE, "sage")
    worker = job_client(seeded, key)
    job = worker.lease(["sage"])["job"]
    worker.submit_record(job["job_id"], record_event(key, job, verdict="not_replicated"))
    doc = _status(seeded, SAGE_SUFFIX)
    assert doc["verification_status"]["replication_status"] == "not_replicated"
    replications = doc["trust"]["replications"]
    assert (replications["from_jobs"], replications["self_reported"]) == (1, 1)
    assert replications["job_verdicts"] == {"not_replicated": 1}
    page = seeded.get(f"/pith/{SAGE_SUFFIX}").text
    assert '<span class="alert" title="from registered workers' in page
    assert ">not replicated</span>" in page and "registered worker&#39;s job" in page


def test_a_license_that_is_not_http_is_not_a_link(seeded: TestClient) -> None:
    paper = {
        "arxiv_id": "2611.04321",
        "version": 1,
        "title": "Links",
        "abstract": "Only http(s) links are rendered.",
        "authors": ["Ada Lovelace"],
        "license": "javascript:alert(document.domain)",
        "primary_cat": "cs.LG",
        "cross_cats": [],
        "submitted_at": "2026-11-02T10:00:00Z",
    }
    r = seeded.post("/api/records", json=paper, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 201, r.text
    page = seeded.get(f"/pith/{r.json()['pith_number'].rsplit(':', 1)[1]}").text
    assert 'href="javascript:' not in page and "license javascript:" in page


def test_a_witnessed_log_checkpoint_anchors_the_records_it_holds(
    settings: Settings, database: Database
) -> None:
    """Issue 14 item 1: the record's `record` event under a checkpoint a quorum of configured
    witnesses cosigned is external evidence it existed by their cosignatures' time."""
    from nacl.signing import SigningKey

    from app.registry.service import load_identity
    from pith_core import note

    from .helpers import import_seeds

    wkey, name = SigningKey.generate(), "witness.example/w1"
    vkey = note.verifier_key(name, bytes(wkey.verify_key), note.SIG_COSIGNATURE_V1)
    witnessed = settings.model_copy(update={"log_witnesses": [vkey], "log_witness_quorum": 1})
    import_seeds(database, load_identity(witnessed))
    with make_client(witnessed, database) as client:
        before = _status(client)
        assert before["verification_status"]["externally_anchored"] is False
        assert "witnessed_log" not in before["trust"]["anchors"]
        raw = client.get("/log/checkpoint/unwitnessed").text
        body = note.parse_note(raw).text
        cosigned = note.add_signatures(raw, [note.cosign(body, name, wkey, 1_800_000_000)])
        assert client.post("/log/cosignature", content=cosigned).status_code == 200
        # a later event moves the log head (the read cache's clock); FORGE's record stays
        # under the cosigned checkpoint
        later = signed_event(new_key(), SAGE)
        assert _post(client, "replication_record", later, SAGE_SUFFIX).status_code == 201
        doc = _status(client)
        assert doc["verification_status"]["externally_anchored"] is True
        evidence = doc["trust"]["anchors"]["witnessed_log"]
        size = note.parse_checkpoint(body).size
        assert evidence["tree_size"] == size and evidence["leaf_index"] < size
        assert evidence["cosignatures"] == [{"witness": name, "at": "2027-01-15T08:00:00Z"}]
        assert doc["trust"]["anchors"]["verified_by"] == [evidence]
        assert "anchored (witnessed log)" in client.get(f"/pith/{FORGE_SUFFIX}").text
        assert "anchored" in client.get(f"/pith/{FORGE_SUFFIX}/badge.svg").text
    # without the quorum setting the same cosignature is no evidence
    with make_client(settings, database) as client:
        assert _status(client)["verification_status"]["externally_anchored"] is False
