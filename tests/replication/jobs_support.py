"""Helpers of the job tests: admin calls, a worker's signed client, signed replication records."""

from __future__ import annotations

from typing import Any

import httpx

from pith_core.events import build_event, sign_event, signer_info
from pith_core.keys import KeyPair
from replication.client import JobClient
from tests.app.helpers import ADMIN_TOKEN, seed_number

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FORGE = seed_number("000")  # arXiv 2606.22932, receipt from the public registry
SAGE = "pith:2026:KQGQ3HUFVD5QJXTDZURY2OGC6I"  # arXiv 2604.07663, imported as a page: our receipt
ENVIRONMENT = {"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": "1", "torch": "2.11.0"}


def register(http: httpx.Client, worker_id: str, key: KeyPair) -> dict[str, Any]:
    r = http.post(
        "/api/workers",
        json={"worker_id": worker_id, "public_key_hex": key.public_key.hex()},
        headers=ADMIN,
    )
    assert r.status_code in (200, 201), r.text
    return r.json()


def queue(http: httpx.Client, pith: str, claim_id: str, profile: str = "smoke") -> dict[str, Any]:
    r = http.post(
        "/api/jobs", json={"pith": pith, "claim_id": claim_id, "profile": profile}, headers=ADMIN
    )
    assert r.status_code == 201, r.text
    return r.json()


def job_client(http: httpx.Client, key: KeyPair) -> JobClient:
    """The worker's own client, sending through `http` (an in-process TestClient or a live one)."""
    jc = JobClient(str(http.base_url), key)
    jc.http.close()
    jc.http = http
    return jc


def record_event(
    key: KeyPair,
    job: dict[str, Any],
    *,
    seq: int = 1,
    prev: str | None = None,
    subject: str | None = None,
    target: str = "replication",
    created_at: str = "2026-11-23T05:00:00Z",
    **payload_changes: Any,
) -> dict[str, Any]:
    """A signed replication_record for `job`, as a worker builds it (fields changed on demand)."""
    payload: dict[str, Any] = {
        "job_id": job["job_id"],
        "claim_id": job["claim_id"],
        "profile": job["profile"],
        "verdict": "replicated",
        "checks": [
            {
                "name": "speedup_vs_torch",
                "measured": "1.41",
                "op": ">=",
                "target": "1.25",
                "passed": True,
                "gating": True,
            }
        ],
        "figures": {"speedup_vs_torch": "1.41", "peak_mem_ratio": "0.43"},
        "environment": ENVIRONMENT,
        "log_sha256": "ab" * 32,
    }
    payload.update(payload_changes)
    unsigned = build_event(
        target=target,
        subject=subject or job["pith_number"],
        created_at=created_at,
        seq=seq,
        prev=prev,
        signer=signer_info(key, signer_id=key.key_id, signer_type="gpu_worker"),
        payload=payload,
    )
    return sign_event(unsigned, key)
