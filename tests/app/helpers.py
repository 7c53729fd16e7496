"""Shared helpers of the service's tests: seed files, signed test events, problem checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from app.records.importing import read_candidate
from app.records.service import import_candidates
from app.storage.engine import Database
from pith_core.events import build_event, sign_event, signer_info
from pith_core.keys import PUBLIC_REGISTRY_KEY_HEX, KeyPair

REPO = Path(__file__).resolve().parents[2]
SEEDS_DIR = REPO / "seeds"
SEED_FILES = sorted(SEEDS_DIR.glob("*.txt"))
ADMIN_TOKEN = "test-admin-token-0123456789"
BASE_URL = "http://testserver"
PUBLIC_KEY = bytes.fromhex(PUBLIC_REGISTRY_KEY_HEX)


# A payload each target's schema (app/trust/payloads.py) accepts, for tests about other things.
VALID_PAYLOADS: dict[str, dict[str, Any]] = {
    "timestamp_anchor": {"method": "opentimestamps", "canonical_sha256": "0" * 64},
    "storage_attestation": {"uri": "https://archive.example/paper.pdf"},
    "author_attestation": {"author": "A. Author"},
    "citation_signature": {"citing": "pith:2026:AAAAAAAA"},
    "correction": {"detail": "a typo in the abstract"},
    "mirror_hint": {"url": "https://mirror.example/"},
}


def seed_json(prefix: str) -> dict[str, Any]:
    """A JSON seed (000, 001, 003, 004) as published."""
    (path,) = [p for p in SEED_FILES if p.name.startswith(prefix)]
    return json.loads(path.read_text())


def seed_number(prefix: str) -> str:
    doc = seed_json(prefix)
    return doc["pith_number"]


def seed_hash(prefix: str) -> str:
    """The canonical hash the seed itself states (never recomputed by our code)."""
    if prefix == "002":
        lines = (SEEDS_DIR / "002_208f6f75bdc33b35.txt").read_text().splitlines()
        return lines[lines.index("Canonical hash") + 2].strip()
    doc = seed_json(prefix)
    if "canonical_sha256" in doc:
        return doc["canonical_sha256"]
    return doc["current"]["record_created"]["payload"]["canonical_sha256"]


def import_seeds(database: Database, identity: Any) -> None:
    candidates = [read_candidate(p.read_bytes(), str(p), PUBLIC_KEY) for p in SEED_FILES]
    with database.write() as session:
        import_candidates(session, identity, candidates)


def new_key(key_id: str = "worker-1") -> KeyPair:
    return KeyPair(SigningKey.generate(), key_id)


def signed_event(
    key: KeyPair,
    subject: str,
    *,
    target: str = "replication",
    seq: int = 1,
    prev: str | None = None,
    created_at: str = "2026-11-23T05:00:00Z",
    payload: dict[str, Any] | None = None,
    signer_id: str = "gpu-worker",
    signer_type: str = "replication_worker",
) -> dict[str, Any]:
    if payload is None:
        payload = (
            {"claim_id": "forge-memory", "verdict": "replicated", "metric": "0.42"}
            if target == "replication"
            else {**VALID_PAYLOADS.get(target, {}), "note": f"{target} {seq}"}
        )
    unsigned = build_event(
        target=target,
        subject=subject,
        created_at=created_at,
        seq=seq,
        prev=prev,
        signer=signer_info(key, signer_id=signer_id, signer_type=signer_type),
        payload=payload,
    )
    return sign_event(unsigned, key)


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """`response` is an application/problem+json of `status` (and type `code`)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"]
    if code is not None:
        assert body["type"] == f"urn:pith:problem:{code}", body
    return body
